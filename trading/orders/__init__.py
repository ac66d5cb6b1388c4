"""Orders: the entry intent handed to the order router, and (next) the journal and gateways."""
