"""The clinician console: server-rendered pages over the application layer (issue 16).

`console_router` is an APIRouter the HTTP API's app includes (`create_app(...,
extra_routers=[console_router(...)])`), so the console shares the API's process and port.
Pages are Jinja2 templates (escaped by default); a small script of its own (no framework,
no build step) refreshes the notices and a session's state every few seconds, without
touching a form someone is filling in.
"""
