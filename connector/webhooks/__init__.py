"""Jobylon's `calendar_event` webhooks: the receiver (`receiver`), the delivery read into a
checked record (`payload`), the pure decisions about it (`matching`), their effects on the state
(`intake`), the optional write-back to the partner (`forward`) and the service that runs them
(`service`). See docs/design.md §7, "Webhooks"."""
