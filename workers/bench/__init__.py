"""`cloudathome bench`: one module per section (data path, control plane, recovery, scale,
certificates), the instruments they share, and the report."""
