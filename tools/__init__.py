"""Developer tooling, not part of what ComfyUI imports: the headless demo, the GPU benchmark,
the fuzz matrix, the registry host set-up, workflow edits and the test-only tiny models.
Everything here reaches the pack as the package ``pack_loader.PACKAGE``."""
