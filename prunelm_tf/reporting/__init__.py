"""Rendering of compression and benchmark results: tables, figures, report.md/html, HParams.

  entries    reading measurement entries by data (method, options, target sparsity)
  text       number formatting for tables
  document   a report as blocks -> report.md and a self-contained report.html
  plots      a metric vs size / vs sparsity as PNG (matplotlib, optional)
  hparams    TensorBoard HParams with the registry's columns: write_hparams, read_hparams

What a particular benchmark checks (its targets) lives beside it in benchmarks/.
"""
