"""Juju relation endpoints: one module per interface, each owning its wire format."""
