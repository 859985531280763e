"""Sphinx configuration of the seqmodels documentation (`make docs`)."""

import seqmodels

project = "seqmodels"
author = "the seqmodels authors"
copyright = "the seqmodels authors"
release = getattr(seqmodels, "__version__", "0.1.0")

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
    # MathJax served with the site (the docstrings' equations render without internet).
    "sphinx-mathjax-offline",
]

# .rst: the stub pages autosummary generates under api/generated/.
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Google-style sections (Args, Shape, Returns, Example) as torch writes them.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Attributes:" as fields of the class, not a second description of the members autodoc lists.
napoleon_use_ivar = True
# "Shape:" (torch's inputs and outputs with their sizes) renders as its own section.
napoleon_custom_sections = ["Shape", "Inputs", "Outputs"]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
# Types join the Args a docstring already has (no second, type-only parameter list).
autodoc_typehints_description_target = "documented"
autosummary_generate = True
# Lightning's and torch's bases bring hundreds of inherited members; document ours.
autodoc_inherit_docstrings = False

html_theme = "pydata_sphinx_theme"
html_title = "seqmodels"
html_static_path = ["_static"]
templates_path = ["_templates"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
copybutton_prompt_text = r"\$ |>>> |\.\.\. "
copybutton_prompt_is_regexp = True
