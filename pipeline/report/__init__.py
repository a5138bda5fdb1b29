"""The patient report (HTML + PDF) and results.json, and the cohort summary page.

:mod:`.build` gathers one case's stage outputs into a :class:`~.results.CaseResults`
(the documented ``results.json``), renders the Jinja2 template with every picture embedded
(one self-contained HTML file) and prints the same page to PDF with WeasyPrint.
"""
