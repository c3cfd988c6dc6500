"""`cloudathome bench`: one module per section (data, control, recovery, scale, certs), what they
all run on (harness), their instruments (tools) and the report; `run` is the entry point."""
