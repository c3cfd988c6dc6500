"""The library both sites' processes share: typed env helpers, atomic files, domain errors,
the API error shape and docs, tokens, the hostname rule, the supervisor behind `up`, the
`cloudathome` command and the shared UI look. Imports no app of either site."""
