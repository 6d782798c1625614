"""A headless Streamlit client for load measurements: speaks the dashboard's own wire protocol (Streamlit 1.67,
protobuf over the /_stcore/stream websocket) the way the browser frontend does, without a browser.

One session (see :func:`upload_session`):

1. ``GET /_stcore/health`` (the frontend's ping) sets the ``_streamlit_xsrf`` cookie; the websocket is opened with
   the subprotocols ``["streamlit", <xsrf cookie>]``, that cookie and a same-origin ``Origin`` header.
2. ``BackMsg.rerun_script`` with ``page_name="Prediction"`` (a deep link: the frontend sends the URL path as the page
   name and an empty page_script_hash), a ``ContextInfo`` and no widget state; the ``ForwardMsg`` stream brings
   ``new_session`` (session id), ``navigation`` (the page_script_hash of the page st.navigation ran, which later
   reruns must name), the deltas and ``script_finished``.
3. The upload, as the file uploader does: ``BackMsg.file_urls_request`` -> ``ForwardMsg.file_urls_response``; a
   multipart ``PUT`` of the file to its upload URL (``X-Xsrftoken`` header = the cookie); then ``rerun_script`` with
   the page's hash, the widget states the frontend holds (every widget's current value as drawn, the uploader's
   ``file_uploader_state_value`` with the uploaded file's info) and the hashes of the cacheable messages it has
   already received (the server sends ``ref_hash`` references for those; they are resolved from the local cache).
4. Timed from the file_urls_request to ``script_finished`` of the run that scored the file; also the moment the
   Grad-CAM overlay was complete (its caption arrived and both images of that row were fetched from /media, which the
   client does as soon as each image delta arrives, like the browser). Collected from the deltas: the "Pneumonia
   score" metric, the subheader (the file name), the images and their captions, exceptions and st.error alerts.

Every failure is reported in the result, never raised. Standard library + `websockets` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import mimetypes
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

OVERLAY_MARK = "red = most influential"
"""Text of the Grad-CAM overlay's image caption on the Prediction page."""
METRIC_LABEL = "Pneumonia score"


@dataclass
class ProtocolResult:
    """What one protocol session saw (same fields as tests.browser.load.SessionResult, plus the protocol's own)."""

    file: str
    probability: str | None = None
    heading: str | None = None
    overlay_caption: str | None = None
    images: int = 0
    seconds: float | None = None
    """From the file_urls_request to script_finished of the run that scored the file."""
    seconds_to_overlay: float | None = None
    """From the file_urls_request until the overlay caption arrived and both images of its row were fetched."""
    error: str | None = None
    exceptions: list[str] = field(default_factory=list)
    image_bytes: int = 0
    messages: int = 0
    """ForwardMsgs received during the measured upload run."""


class ProtocolError(RuntimeError):
    """The server answered something the browser frontend would not have continued with."""


def _http(base_url: str, method: str, path: str, *, body: bytes | None = None, headers: dict | None = None,
          timeout: float = 60.0) -> tuple[int, dict[str, str], bytes]:
    """One blocking HTTP request (run in a thread); status, headers (lower-case names, Set-Cookie joined), body."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        connection.close()


def _context_info(url: str) -> ClientState:
    """The browser context the frontend sends with every rerun (a fixed, plausible one)."""
    state = ClientState()
    info = state.context_info
    info.timezone, info.timezone_offset, info.locale = "UTC", 0, "en-US"
    info.url, info.is_embedded, info.color_scheme = url, False, "light"
    return state


def _initial_widget_state(element: Element) -> WidgetState | None:
    """The value a freshly drawn widget reports to the server on the next rerun, as the frontend's widgets do on mount
    (text inputs, select boxes, radios, checkboxes/toggles; other widgets are left to their server-side state)."""
    kind = element.WhichOneof("type")
    widget = getattr(element, kind) if kind else None
    state = WidgetState()
    if kind == "text_input":
        state.id, state.string_value = widget.id, widget.value if widget.set_value else widget.default
    elif kind in ("selectbox", "radio"):
        if widget.set_value:
            state.id, state.string_value = widget.id, widget.raw_value
        elif widget.HasField("default") and 0 <= widget.default < len(widget.options):
            state.id, state.string_value = widget.id, widget.options[widget.default]
        else:
            return None  # no selection (index=None): the frontend reports nothing either
    elif kind == "checkbox":
        state.id, state.bool_value = widget.id, widget.value if widget.set_value else widget.default
    else:
        return None
    return state


class StreamlitSession:
    """One websocket session of the dashboard, driven like the browser frontend drives it (use `async with`)."""

    def __init__(self, base_url: str, *, timeout_s: float = 300.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session_id: str | None = None
        self.page_script_hash = ""
        self.elements: dict[tuple[int, ...], Element] = {}
        """The current run's elements by delta path (reset at every new_session, like a fresh page render)."""
        self.cache: dict[str, ForwardMsg] = {}
        self._xsrf = ""
        self._socket = None
        self._media: list[asyncio.Task] = []
        self.messages = 0

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Ping /_stcore/health (sets the XSRF cookie), then open the websocket as the frontend does."""
        from websockets.asyncio.client import connect

        status, headers, body = await asyncio.to_thread(_http, self.base_url, "GET", "/_stcore/health")
        if status != 200:
            raise ProtocolError(f"/_stcore/health answered {status}: {body[:200]!r}")
        cookie = headers.get("set-cookie", "")
        if cookie.startswith("_streamlit_xsrf="):
            self._xsrf = cookie.split(";", 1)[0].split("=", 1)[1]
        host = urlsplit(self.base_url).netloc
        self._socket = await connect(
            f"ws://{host}/_stcore/stream", subprotocols=["streamlit", self._xsrf or "PLACEHOLDER_AUTH_TOKEN"],
            origin=self.base_url, additional_headers={"Cookie": f"_streamlit_xsrf={self._xsrf}"} if self._xsrf else None,
            max_size=None, open_timeout=self.timeout_s)

    async def close(self) -> None:
        """Cancel pending image fetches and close the websocket."""
        for task in self._media:
            task.cancel()
        if self._socket is not None:
            await self._socket.close()

    async def send(self, message: BackMsg) -> None:
        """Send one BackMsg (a binary frame, as the frontend does)."""
        await self._socket.send(message.SerializeToString())

    async def receive(self) -> ForwardMsg:
        """The next ForwardMsg; a ref_hash is replaced by the cached message it points to (metadata from the ref)."""
        data = await asyncio.wait_for(self._socket.recv(), self.timeout_s)
        message = ForwardMsg()
        message.ParseFromString(data)
        self.messages += 1
        if message.WhichOneof("type") == "ref_hash":
            cached = self.cache.get(message.ref_hash)
            if cached is None:
                raise ProtocolError(f"the server referred to a message this client never cached ({message.ref_hash})")
            resolved = ForwardMsg()
            resolved.CopyFrom(cached)
            resolved.metadata.CopyFrom(message.metadata)
            message = resolved
        elif message.metadata.cacheable and message.hash:
            self.cache[message.hash] = message
        return message

    def rerun_message(self, widget_states: list[WidgetState], *, page_name: str = "") -> BackMsg:
        """A rerun_script BackMsg as App.sendRerunBackMsg builds it."""
        message = BackMsg()
        state = message.rerun_script
        state.CopyFrom(_context_info(f"{self.base_url}/{page_name}"))
        state.query_string = ""
        state.page_script_hash = "" if page_name else self.page_script_hash
        state.page_name = page_name
        state.widget_states.widgets.extend(widget_states)
        state.cached_message_hashes.extend(self.cache)
        return message

    async def run_until_finished(self, on_element=None) -> None:
        """Read ForwardMsgs until a full run finishes successfully (runs ended early for a rerun, e.g. by
        st.switch_page, are followed to the next run). `on_element(path, element)` sees each new element."""
        while True:
            message = await self.receive()
            kind = message.WhichOneof("type")
            if kind == "new_session":
                if message.new_session.HasField("initialize"):
                    self.session_id = message.new_session.initialize.session_id
                self.page_script_hash = message.new_session.page_script_hash
                self.elements = {}
            elif kind == "navigation" and message.navigation.page_script_hash:
                # With st.navigation the page actually run is announced here (new_session carries the main script's).
                self.page_script_hash = message.navigation.page_script_hash
            elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
                path = tuple(message.metadata.delta_path)
                self.elements[path] = message.delta.new_element
                if on_element is not None:
                    on_element(path, message.delta.new_element)
            elif kind == "page_not_found":
                raise ProtocolError(f"page not found: {message.page_not_found.page_name!r}")
            elif kind == "script_finished":
                status = ForwardMsg.ScriptFinishedStatus.Name(message.script_finished)
                if status == "FINISHED_SUCCESSFULLY":
                    return
                if status == "FINISHED_WITH_COMPILE_ERROR":
                    raise ProtocolError("the page did not compile (FINISHED_WITH_COMPILE_ERROR)")

    def widget_states(self, **overrides: WidgetState) -> list[WidgetState]:
        """The states the frontend would send now: every drawn widget's value, with `overrides` by widget id."""
        states = {}
        for element in self.elements.values():
            state = _initial_widget_state(element)
            if state is not None:
                states[state.id] = state
        states.update(overrides)
        return list(states.values())

    async def open_page(self, page_name: str) -> None:
        """Open a page by its URL path (e.g. "Prediction"), as a browser opening http://host/Prediction."""
        await self.send(self.rerun_message([], page_name=page_name))
        await self.run_until_finished()

    def find(self, kind: str) -> list[tuple[tuple[int, ...], Element]]:
        """The current run's elements of one type (e.g. "file_uploader", "metric"), in page order."""
        return sorted((path, element) for path, element in self.elements.items() if element.WhichOneof("type") == kind)

    async def upload(self, uploader_id: str, path: Path, on_element=None) -> None:
        """Upload one file into a file uploader and wait for the run that uses it to finish."""
        data = path.read_bytes()
        request_id = str(uuid.uuid4())
        message = BackMsg()
        message.file_urls_request.request_id = request_id
        message.file_urls_request.file_names.append(path.name)
        message.file_urls_request.session_id = self.session_id or ""
        await self.send(message)
        while True:
            reply = await self.receive()
            if reply.WhichOneof("type") == "file_urls_response" and reply.file_urls_response.response_id == request_id:
                break
        if reply.file_urls_response.error_msg:
            raise ProtocolError(f"file_urls_response: {reply.file_urls_response.error_msg}")
        urls = reply.file_urls_response.file_urls[0]
        boundary = f"----streamlitclient{uuid.uuid4().hex}"
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{path.name}\"; filename=\"{path.name}\"\r\n"
                f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        if self._xsrf:
            headers |= {"X-Xsrftoken": self._xsrf, "Cookie": f"_streamlit_xsrf={self._xsrf}"}
        status, _, answer = await asyncio.to_thread(_http, self.base_url, "PUT", urls.upload_url, body=body, headers=headers,
                                                    timeout=self.timeout_s)
        if status not in (200, 204):
            raise ProtocolError(f"PUT {urls.upload_url} answered {status}: {answer[:200]!r}")
        state = WidgetState(id=uploader_id)
        info = state.file_uploader_state_value.uploaded_file_info.add()
        info.name, info.size, info.file_id = path.name, len(data), urls.file_id
        info.file_urls.CopyFrom(urls)
        await self.send(self.rerun_message(self.widget_states(**{uploader_id: state})))
        await self.run_until_finished(on_element)

    def fetch_media(self, url: str) -> asyncio.Task:
        """Start fetching one /media URL (an image), as the browser does when the image element arrives."""
        async def fetch() -> tuple[int, float]:
            status, _, body = await asyncio.to_thread(_http, self.base_url, "GET", url, timeout=self.timeout_s)
            if status != 200:
                raise ProtocolError(f"GET {url} answered {status}")
            return len(body), time.perf_counter()
        task = asyncio.create_task(fetch())
        self._media.append(task)
        return task


async def upload_session(base_url: str, path: Path, *, page: str = "Prediction", timeout_s: float = 300.0,
                         ready: asyncio.Barrier | None = None, on_start=None) -> ProtocolResult:
    """One user: open the Prediction page, upload `path`, wait for the run that scored it; what it showed and when.

    With ``ready``, every session first has its page open, then all upload at the same moment (as
    tests.browser.load does); ``on_start()`` is called once the barrier is passed, before the upload starts.
    """
    result = ProtocolResult(file=path.name)
    session = StreamlitSession(base_url, timeout_s=timeout_s)
    passed = False
    try:
        async with asyncio.timeout(timeout_s):
            await session.connect()
            await session.open_page(page)
            uploaders = session.find("file_uploader")
            if not uploaders:
                raise ProtocolError(f"no file uploader on the {page} page")
            if ready is not None:
                await ready.wait()
            passed = True
            if on_start is not None:
                on_start()
            overlay: dict = {}
            start = time.perf_counter()

            def on_element(_path: tuple[int, ...], element: Element) -> None:
                if element.WhichOneof("type") == "imgs":
                    tasks = [session.fetch_media(image.url) for image in element.imgs.imgs]
                    if any(OVERLAY_MARK in image.caption for image in element.imgs.imgs):
                        overlay["caption_at"] = time.perf_counter()
                        overlay["tasks"] = overlay.get("row", []) + tasks
                    else:
                        overlay["row"] = tasks  # the original image, drawn just before the overlay in the same row

            session.messages = 0
            await session.upload(uploaders[0][1].file_uploader.id, path, on_element)
            result.seconds = time.perf_counter() - start
            result.messages = session.messages
            if overlay.get("tasks"):
                fetched = await asyncio.gather(*overlay["tasks"])
                result.seconds_to_overlay = max([overlay["caption_at"], *(done for _, done in fetched)]) - start
                result.image_bytes = sum(size for size, _ in fetched)
            _read_page(session, result)
    except Exception as error:  # noqa: BLE001 - every failure of a session is reported, not raised
        result.error = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
        if ready is not None and not passed:
            await ready.abort()  # the others must not wait for a session that will never upload
    finally:
        with contextlib.suppress(Exception):  # closing a broken socket must not hide the session's result
            await session.close()
    return result


def _read_page(session: StreamlitSession, result: ProtocolResult) -> None:
    """Fill the result from the finished run's elements (the deltas of the run that scored the file)."""
    for _, element in sorted(session.elements.items()):
        kind = element.WhichOneof("type")
        if kind == "metric" and element.metric.label == METRIC_LABEL and result.probability is None:
            result.probability = element.metric.body
        elif kind == "heading" and element.heading.tag == "h3" and result.heading is None:
            result.heading = element.heading.body
        elif kind == "imgs":
            result.images += len(element.imgs.imgs)
            for image in element.imgs.imgs:
                if OVERLAY_MARK in image.caption:
                    result.overlay_caption = image.caption
        elif kind == "exception":
            result.exceptions.append(f"{element.exception.type}: {element.exception.message}")
        elif kind == "alert" and element.alert.format == Alert.ERROR:
            result.exceptions.append(f"st.error: {element.alert.body}")


async def run_protocol_sessions(base_url: str | list[str], files: list[Path], *, timeout_s: float = 300.0,
                                on_start=None) -> list[ProtocolResult]:
    """One protocol session per file, all at once: every page open first, then every upload at the same moment.

    With several base URLs (replicas), session i goes to ``base_url[i % len(base_url)]`` and stays there, as a sticky
    load balancer would place it.
    """
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    ready = asyncio.Barrier(len(files))
    return list(await asyncio.gather(*(upload_session(urls[i % len(urls)], f, timeout_s=timeout_s, ready=ready,
                                                      on_start=on_start) for i, f in enumerate(files))))
