"""Protocol adapters; each package has codec, session and adapter modules."""
