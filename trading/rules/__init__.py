"""Pure trading logic: values in, typed decisions out; no Django, Redis, network or clock."""
