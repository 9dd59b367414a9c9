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


def fail(handler: BaseHTTPRequestHandler, status: int) -> None:
    """Answer with an empty HTTP error; a 429 says Retry-After: 0.05."""
    handler.send_response(status)
    if status == 429:
        handler.send_header("Retry-After", "0.05")
    handler.send_header("Content-Length", "0")
    handler.end_headers()
