"""A local stand-in for an OpenAI-compatible chat-completions endpoint, for the annotator tests."""

import json
from http.server import BaseHTTPRequestHandler


def reply(handler: BaseHTTPRequestHandler, answer: str | bytes, usage: dict | None = None) -> None:
    """Answer with a chat completion whose content is ``answer`` (bytes: that raw body instead)."""
    if isinstance(answer, bytes):
        data = answer
    else:
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}], **({"usage": usage} if usage else {})}).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
