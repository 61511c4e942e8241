"""The ``--robust-report`` reporter: results.json, results.csv and a self-contained report.html.

* :mod:`.collector` — the pytest plugin object, registered on the controller only; it reads every
  test report's ``user_properties`` (so pytest-xdist workers never write anything).
* :mod:`.results` — the versioned results document (schema in ``docs/results-schema.md``): one
  flat row per (test, recorded result); :mod:`.evaluations` — ``results.csv``: one row per
  evaluation, with the tests and gates that used it and the run's identity.
* :mod:`.figures` — matplotlib figures as inline SVG; :mod:`.html` — the Jinja2 page
  (autoescaped); :mod:`.reference` — the reference study's Table V; :mod:`.run` — run id,
  manifest, writing the run folder and the ``latest`` pointer.
"""
