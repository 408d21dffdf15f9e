"""The lookup engine: point reads of a lookup dataset's version by keyed pseudonym, and cohort summaries.

Plain Python (pyarrow and DuckDB), no Django: the platform's `lookups` app decides who may
look up what, meters and audits it, and calls these.

- `reader.LookupTable`: the rows of given pseudonyms, read through the row-group statistics of
  files sorted by the primary key (a few kilobytes decoded per customer); a secondary key
  (a mobile number) goes through its index file first. Large batches scan instead.
- `cohort.summarize`: per-group count, mean, quartiles and share above a cut-off of the matched
  customers, with groups of fewer than k distinct customers left out without a trace.
"""
