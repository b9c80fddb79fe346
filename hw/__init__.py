"""Gateware of the systolic-array accelerator."""
