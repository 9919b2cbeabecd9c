"""Host glue the features share: the running ComfyUI server, through which a node sends
messages (progress text, chart events) to the browser while it executes."""


def prompt_server():
    """ComfyUI's PromptServer, or None when no server runs (tests, scripts, the headless demo's
    direct calls). Looked up at call time: the pack imports nothing of the server at load."""
    try:
        from server import PromptServer
    except ImportError:
        return None
    return getattr(PromptServer, "instance", None)


def queueing_client(server):
    """The id of the client that queued the prompt now executing; None for API calls without
    one (messages then go nowhere rather than to every user)."""
    return getattr(server, "client_id", None)
