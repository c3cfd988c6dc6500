"""Running both sites on one machine: the local site launchers, a local Pebble, process
helpers, and `cloudathome demo`. Used by the demo, the benchmark and the tests; never by a site."""
