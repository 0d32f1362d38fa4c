"""The escape hatches, for what a JSON object in and out cannot do.

- ``update``: @raw_environ, the handler reads the WSGI environ (e.g. a multipart upload).
- ``delete``: @raw_response, the handler answers in another format itself.
- ``read``: both, the handler is a plain WSGI application.
"""

from apiphant.hatches import raw_environ, raw_response


@raw_environ
def update(environ):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    return {"method": environ["REQUEST_METHOD"], "length": len(body)}


@raw_response
def delete(request, start_response):
    text = f"deleted {request.get('id')}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text]


@raw_environ
@raw_response
def read(environ, start_response):
    text = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text]
