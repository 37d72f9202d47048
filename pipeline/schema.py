"""Column names and Arrow types shared by the readers, the stages and the writers.

Readers emit one row per input record (skipped and broken ones included, so that every record is counted). Stages
add signal columns and mark rows with `drop_reason` or `error`. The outcome columns and raw payload never reach the
output files.
"""

from __future__ import annotations

import pyarrow as pa

# Lineage: what every output row carries, whatever stages ran.
LINEAGE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("url", pa.string()),
        pa.field("host", pa.string()),
        pa.field("domain", pa.string()),
        pa.field("source", pa.string()),
        pa.field("offset", pa.int64()),
        pa.field("date", pa.timestamp("ms", tz="UTC")),
        pa.field("record_id", pa.string()),
        pa.field("payload_bytes", pa.int64()),
        pa.field("truncated", pa.bool_()),
    ]
)

# Inputs to the first stages; dropped before writing.
HTML = "html"
CHARSET = "charset"
TEXT = "text"

# Outcome of a stage for each row: a row is kept when both are null.
DROP_REASON = "drop_reason"
ERROR = "error"
ERROR_DETAIL = "error_detail"
OUTCOME_FIELDS = (DROP_REASON, ERROR, ERROR_DETAIL)

RECORD_SCHEMA = (
    LINEAGE_SCHEMA.append(pa.field(HTML, pa.binary()))
    .append(pa.field(CHARSET, pa.string()))
    .append(pa.field(TEXT, pa.string()))
)
for _name in OUTCOME_FIELDS:
    RECORD_SCHEMA = RECORD_SCHEMA.append(pa.field(_name, pa.string()))

# Never written to the documents output: raw payloads and per-stage outcome bookkeeping.
INTERNAL_FIELDS = (HTML, *OUTCOME_FIELDS)


def empty_row() -> dict:
    """A row with every reader column present and null, to fill in."""
    return dict.fromkeys(RECORD_SCHEMA.names)
