"""Workload-side code: rendered files, the Pebble layer, Synapse's API and in-container scripts."""
