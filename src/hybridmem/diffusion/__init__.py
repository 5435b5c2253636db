"""The flow-matching schedule and sampler (flow.py): stateless, apart from any network."""
