"""Custom fields as typed, readably named columns.

Pipedrive keys custom fields by 40-character hashes that differ per company, and
describes them in the ``*Fields`` endpoints. The modules, each importing only those
above it in this list:

* ``definitions``: the field sources (one description per ``*Fields`` endpoint), the
  field definitions, and the per-run catalogue the tap loads through a reader it passes in.
* ``naming``: column names, and the column → field key record in the catalog metadata.
* ``schema``: the JSON Schema of a custom column, and the stream schema with them.
* ``conversion``: one converter per field, from Pipedrive's values to the column's type.
* ``layout``: one stream's custom columns (schema, names, record transformation), the
  stream ``schema`` hook, and the tap's two moments to load the catalogue.

A stream gets its custom fields by declaring ``custom_fields_entity = "deal"``.
"""
