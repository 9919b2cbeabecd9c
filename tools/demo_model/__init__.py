"""Training, evaluation and report scripts of the ShapeFirst demo model (nodes/demo_models)."""
