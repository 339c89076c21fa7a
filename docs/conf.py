"""Sphinx configuration of the executed site (``make site``).

The pages are built from notebooks that were already executed in the smoke profile (by
``make test`` or ``make site``), so Sphinx executes nothing: ``nb_execution_mode = "off"``.
``tools/build_site.py`` copies this folder and the executed notebooks into ``build/site-src``
and runs ``sphinx-build`` there; the HTML lands in ``build/site`` (git-ignored).
"""

project = "Query–Document Pairs Cookbook"
author = "the cookbook's contributors"
copyright = "the cookbook's contributors, Apache-2.0"

extensions = ["myst_nb"]
nb_execution_mode = "off"  # the notebooks arrive executed (smoke profile)
nb_output_stderr = "show"  # warnings stay visible, as in JupyterLab
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "conf.py"]
suppress_warnings = ["myst.header"]  # notebooks start at H1 and jump levels in places

html_theme = "alabaster"
html_title = project
html_theme_options = {"page_width": "1180px", "sidebar_width": "260px", "show_relbars": True}
html_show_sourcelink = False
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
