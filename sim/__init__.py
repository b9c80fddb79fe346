"""Everything that runs against the gateware: references, models, drivers, testbenches."""
