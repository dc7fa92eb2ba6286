"""Keys and passwords never reach a log line, an error, a manifest, provenance, the response
cache's identity column, the dashboard's output or a command line; the embedded server only
answers to its own random key, and an impostor on its port is refused."""

import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from loguru import logger

from kgopt.errors import ConfigError, EndpointError
from kgopt.testing.fake_endpoint import FakeEndpoint, chat_response

PW, QKEY, API_KEY = "hunter2-PW", "q-SECRET-KEY", "sk-live-APIKEY"


@pytest.fixture()
def logs():
    """Everything loguru says during the test, down to DEBUG."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{level} {message}")
    yield lines
    logger.remove(sink)


def _text(lines) -> str:
    return "\n".join(lines)


def _no_secret(text: str, *secrets: str) -> None:
    for s in secrets:
        assert s not in text, f"{s!r} leaked into: {text[:2000]}"


# --- kgopt.redaction: identities ---------------------------------------------------------------


def test_redact_identity_masks_each_url_part_and_keeps_clean_ones_unchanged():
    from kgopt.redaction import redact_identity

    assert redact_identity(f"http://user:{PW}@h:1/v1?key={QKEY}|novel|cache:bench") == "http://user:***@h:1/v1?key=***|novel|cache:bench"
    for clean in ("http://h:1/v1|novel", "embedded|qwen2.5-coder-0.5b-instruct-q4_k_m.gguf:491400064:1d9614638d18024d", "http://h/v1?x=1|m:7b"):
        assert redact_identity(clean) == clean  # existing caches and manifests keep their strings


# --- item 1: an api_base with a password and ?key= --------------------------------------------


def test_secret_bearing_api_base_reaches_no_log_cache_row_manifest_or_provenance(tmp_path, monkeypatch, logs):
    from kgopt.augmentation.generate import _provenance
    from kgopt.clients.config import resolve_endpoint
    from kgopt.clients.lm import connect
    from kgopt.compiler.manifest import compiled_manifest

    monkeypatch.setenv("KGOPT_HOME", str(tmp_path / "home"))
    with FakeEndpoint(respond=lambda req: (200, chat_response("{}"))) as srv:
        secret_url = srv.url.replace("http://", f"http://user:{PW}@") + f"?key={QKEY}"
        monkeypatch.setenv("KGOPT_API_BASE", secret_url)
        monkeypatch.setenv("KGOPT_MODEL", "novel")
        monkeypatch.setenv("KGOPT_API_KEY", API_KEY)
        cfg = resolve_endpoint()
        conn = connect(cfg, cache=True)
        msgs = [{"role": "user", "content": "hi"}]
        assert conn.lm(messages=msgs) == ["{}"] and conn.lm(messages=msgs) == ["{}"]
        assert len(srv.requests) == 1  # sent to the real URL once, then answered from the cache
    shown = srv.url.replace("http://", "http://user:***@") + "?key=***"
    assert f"using endpoint {shown} model novel" in _text(logs)
    assert conn.identity == cfg.identity() == conn.lm.identity == f"{shown}|novel"
    assert conn.lm.api_base == shown and cfg.redacted()["api_base"] == shown
    data = types.SimpleNamespace(dev=[], train=[], dev_limit=None, source=None, files=lambda task, lang: {})
    manifest = compiled_manifest("NER", "en", conn, data, {"f1": 0.0, "by_source": {}}, None, {}, {})
    provenance = _provenance(conn, 1, "person", [], "sentences")
    assert manifest["endpoint"] == provenance["endpoint"] == f"{shown}|novel"
    db = tmp_path / "home" / "responses.sqlite"
    rows = sqlite3.connect(db).execute("SELECT identity FROM responses").fetchall()
    assert rows == [(f"{shown}|novel",)]
    stored = b"".join(p.read_bytes() for p in db.parent.glob("responses.sqlite*"))
    everything = "\n".join([_text(logs), json.dumps(manifest, default=str), json.dumps(provenance), json.dumps(conn.lm.dump_state()),
                            stored.decode("latin-1")])
    _no_secret(everything, PW, QKEY, API_KEY)


def test_endpoint_errors_and_retry_logs_hide_the_url_secrets(logs):
    from kgopt.clients.lm import EndpointLM

    with FakeEndpoint(respond=lambda req: (200, {"id": "x", "object": "chat.completion", "choices": []})) as srv:
        lm = EndpointLM(srv.url.replace("http://", f"http://u:{PW}@") + f"?api_key={QKEY}", "m", cache=None, backoff=0.01, max_retries=1)
        with pytest.raises(EndpointError) as err:
            lm(messages=[{"role": "user", "content": "x"}])
    assert "u:***@127.0.0.1" in str(err.value)
    _no_secret(str(err.value) + _text(logs), PW, QKEY)


def test_cache_keys_do_not_change_and_the_identity_column_is_redacted(tmp_path):
    from kgopt.clients.config import EndpointConfig
    from kgopt.clients.lm import EndpointLM, ResponseCache

    req = {"model": "m", "messages": [{"role": "user", "content": "q"}], "temperature": 0.0}

    def old_key(identity: str) -> str:  # the formula every existing cache was written with
        return hashlib.sha256(json.dumps({"identity": identity, "request": req}, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    assert EndpointConfig(api_base="http://h:1/v1", model="m").identity() == "http://h:1/v1|m"
    for url in ("http://h:1/v1", f"http://u:{PW}@h:1/v1?key={QKEY}"):
        assert EndpointLM(url, "m", cache=None).cache_key(req) == old_key(f"{url}|m")  # hashed only, never stored
    cache = ResponseCache(tmp_path / "r.sqlite")
    cache.put("k1", f"http://u:{PW}@h:1/v1?key={QKEY}|m", {"ok": 1})
    assert cache.get("k1") == {"ok": 1}
    assert sqlite3.connect(tmp_path / "r.sqlite").execute("SELECT identity FROM responses").fetchall() == [("http://u:***@h:1/v1?key=***|m",)]


def test_an_old_cache_holding_a_password_is_redacted_when_opened(tmp_path):
    from kgopt.clients.lm import ResponseCache

    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, identity TEXT, response TEXT, created REAL)")
    con.executemany("INSERT INTO responses VALUES (?, ?, ?, 0)", [("a", f"http://u:{PW}@h/v1|m", '{"a": 1}'), ("b", "http://h/v1|m", '{"b": 2}')])
    con.commit()
    con.close()
    cache = ResponseCache(db)
    assert cache.get("a") == {"a": 1} and cache.get("b") == {"b": 2}  # the answers are kept
    rows = dict(sqlite3.connect(db).execute("SELECT key, identity FROM responses").fetchall())
    assert rows == {"a": "http://u:***@h/v1|m", "b": "http://h/v1|m"}


def test_a_bad_api_base_error_does_not_show_its_password():
    from kgopt.clients.config import resolve_endpoint

    for bad in (f"ftp://u:{PW}@h/v1", f"u:{PW}@h:8192/v1"):
        with pytest.raises(ConfigError, match="http") as err:
            resolve_endpoint(api_base=bad, model="m")
        _no_secret(str(err.value), PW)


# --- item 2: the dashboard's output -------------------------------------------------------------


@pytest.fixture()
def dashboard_stubs(monkeypatch):
    """kgopt.dashboard.serve without a database or a web server: the URL it would open."""
    import optuna_dashboard

    import kgopt.dashboard

    opened: list[str] = []
    monkeypatch.setattr(kgopt.dashboard, "open_storage", lambda url: opened.append(url) or object())
    monkeypatch.setattr(optuna_dashboard, "run_server", lambda storage, host, port: None)
    return opened


def test_dashboard_log_hides_storage_passwords_in_userinfo_and_query(dashboard_stubs, logs):
    from kgopt.dashboard import serve

    url = f"postgresql://kg:{PW}@db.example:5432/studies?password={QKEY}&sslmode=require"
    serve(url)
    assert dashboard_stubs == [url]  # the real URL is what connects
    assert "optuna-dashboard for postgresql://kg:***@db.example:5432/studies?password=***&sslmode=require" in _text(logs)
    _no_secret(_text(logs), PW, QKEY)


def test_dashboard_command_takes_the_storage_password_from_a_file_or_the_environment(dashboard_stubs, logs, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from kgopt.cli.main import app

    secret = "p@ss/w:rd"
    pw_file = tmp_path / "pw"
    pw_file.write_text(secret + "\n", encoding="utf-8")
    pw_file.chmod(0o600)
    base = "postgresql://kg@db.example/studies"
    res = CliRunner().invoke(app, ["dashboard", "--storage", base, "--storage-password-file", str(pw_file)])
    assert res.exit_code == 0, res.output
    monkeypatch.setenv("KGOPT_STORAGE_PASSWORD", secret)
    res = CliRunner().invoke(app, ["dashboard", "--storage", base])
    assert res.exit_code == 0, res.output
    assert dashboard_stubs == ["postgresql://kg:p%40ss%2Fw%3Ard@db.example/studies"] * 2  # in memory only
    import sqlalchemy

    assert sqlalchemy.make_url(dashboard_stubs[0]).password == secret
    _no_secret(_text(logs) + res.output, secret, "p%40ss")


def test_dashboard_command_warns_about_a_password_on_the_command_line(dashboard_stubs, logs):
    from typer.testing import CliRunner

    from kgopt.cli.main import app

    res = CliRunner().invoke(app, ["dashboard", "--storage", f"postgresql://kg:{PW}@db.example/studies"])
    assert res.exit_code == 0, res.output
    text = _text(logs)
    assert "WARNING --storage postgresql://kg:***@db.example/studies holds a password" in text and "--storage-password-file" in text
    _no_secret(text + res.output, PW)


# --- item 3: keys and passwords out of process arguments ---------------------------------------


def test_api_key_env_reads_the_key_from_the_named_variable(monkeypatch, logs):
    from kgopt.cli.main import _connect

    monkeypatch.setenv("MY_LLM_KEY", API_KEY)
    with FakeEndpoint(respond=lambda req: (200, chat_response("{}"))) as srv:
        conn = _connect(srv.url, "m", None, None, api_key_env="MY_LLM_KEY", cache=False)
        conn.lm(messages=[{"role": "user", "content": "x"}])
    assert srv.headers[0]["Authorization"] == f"Bearer {API_KEY}"
    _no_secret(_text(logs), API_KEY)
    monkeypatch.delenv("MY_LLM_KEY")
    with pytest.raises(ConfigError, match="MY_LLM_KEY"):
        _connect("http://h:1/v1", "m", None, None, api_key_env="MY_LLM_KEY", cache=False)
    with pytest.raises(ConfigError, match="not both"):
        _connect("http://h:1/v1", "m", "sk-x", None, api_key_env="HOME", cache=False)


def test_api_key_flag_still_works_with_a_warning_about_process_arguments(logs):
    from kgopt.cli.main import _connect

    with FakeEndpoint(respond=lambda req: (200, chat_response("{}"))) as srv:
        conn = _connect(srv.url, "m", API_KEY, None, cache=False)
        conn.lm(messages=[{"role": "user", "content": "x"}])
    assert srv.headers[0]["Authorization"] == f"Bearer {API_KEY}"
    text = _text(logs)
    assert "WARNING --api-key puts the key in the process arguments" in text and "KGOPT_API_KEY" in text and "--api-key-env" in text
    _no_secret(text, API_KEY)


def test_url_with_password_and_cli_storage_url(tmp_path, monkeypatch, logs):
    from kgopt.clients.credentials import cli_storage_url, url_with_password

    assert url_with_password("postgresql://kg@h:5432/db?sslmode=require", "a b@c") == "postgresql://kg:a%20b%40c@h:5432/db?sslmode=require"
    for url, match in (("postgresql://h/db", "user name"), (f"postgresql://kg:{PW}@h/db", "already"), ("sqlite:///x.db", "no host")):
        with pytest.raises(ConfigError, match=match) as err:
            url_with_password(url, "pw")
        _no_secret(str(err.value), PW)
    assert cli_storage_url(None) is None and cli_storage_url("sqlite:///s.db") == "sqlite:///s.db"
    monkeypatch.setenv("KGOPT_STORAGE_PASSWORD", "envpw")
    assert cli_storage_url("sqlite:///s.db") == "sqlite:///s.db"  # SQLite has no password: the variable is for servers
    assert cli_storage_url("postgresql://kg@h/db") == "postgresql://kg:envpw@h/db"
    pw_file = tmp_path / "pw"
    pw_file.write_text("filepw\nignored\n", encoding="utf-8")
    pw_file.chmod(0o644)
    assert cli_storage_url("postgresql://kg@h/db", pw_file) == "postgresql://kg:filepw@h/db"  # the file outranks the variable
    assert "can be read by other users" in _text(logs)
    with pytest.raises(ConfigError, match="--storage-password-file needs"):
        cli_storage_url(None, pw_file)
    _no_secret(_text(logs), "envpw", "filepw")


def test_every_command_with_api_key_offers_api_key_env_and_compile_a_storage_password_file():
    """The shared options reach every command (wired in kgopt/cli/main.py's command signatures)."""
    import typer

    from kgopt.cli.main import app

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        flags = {opt for p in cmd.params for opt in p.opts}
        if "--api-key" in flags:
            assert "--api-key-env" in flags, name
        if "--storage" in flags:
            assert "--storage-password-file" in flags, name


# --- item 4: the embedded server's key and readiness -------------------------------------------

ALIAS = "qwen2.5-coder-0.5b-instruct"


class _Http:
    """A tiny HTTP server on 127.0.0.1: ``answer(path, authorization) -> (status, body)``."""

    def __init__(self, answer):
        self.seen: list[str | None] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                auth = self.headers.get("Authorization")
                outer.seen.append(auth)
                status, body = answer(self.path, auth)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _models(*ids):
    return {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]}


def _genuine(key):
    """llama_cpp.server with api_key set: 401 without the bearer key, the model list with it."""
    return lambda path, auth: (200, _models(ALIAS)) if auth == f"Bearer {key}" else (401, {"detail": "Invalid API key"})


def _unstarted_server(port: int, key: str):
    """An EmbeddedServer as start() leaves it, with a stand-in child process (no model needed)."""
    from kgopt.clients.embedded import EmbeddedServer

    server = EmbeddedServer.__new__(EmbeddedServer)
    server.model = types.SimpleNamespace(served_name=ALIAS, title="Qwen")
    server.port, server.api_key, server.log_path, server.startup_timeout = port, key, None, 10.0
    server.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    return server


def test_readiness_refuses_an_impostor_that_answers_200_to_everything():
    with _Http(lambda path, auth: (200, _models(ALIAS))) as impostor:
        server = _unstarted_server(impostor.port, "the-key")
        child = server.proc
        with pytest.raises(EndpointError, match=f"another process answers on 127.0.0.1:{impostor.port}"):
            server._wait_ready()
    assert server.proc is None and child.poll() is not None  # our child is stopped
    assert impostor.seen and all(a is None for a in impostor.seen)  # the key was never sent to it


def test_readiness_accepts_only_a_server_that_demands_our_key_and_serves_our_model():
    from kgopt.clients.embedded import probe_server
    from kgopt.localhost import free_port

    with _Http(_genuine("the-key")) as ours:
        server = _unstarted_server(ours.port, "the-key")
        try:
            server._wait_ready()
        finally:
            server.stop()
        assert probe_server(f"http://127.0.0.1:{ours.port}/v1", "the-key", ALIAS) is True
    with _Http(_genuine("someone-elses-key")) as other:  # another user's server: 401 either way
        with pytest.raises(EndpointError, match="with the key got HTTP 401"):
            probe_server(f"http://127.0.0.1:{other.port}/v1", "the-key", ALIAS)
    with _Http(lambda path, auth: (200, _models("other-model")) if auth == "Bearer k" else (401, {})) as wrong:
        with pytest.raises(EndpointError, match="does not serve"):
            probe_server(f"http://127.0.0.1:{wrong.port}/v1", "k", ALIAS)
    assert probe_server(f"http://127.0.0.1:{free_port()}/v1", "k", ALIAS) is False  # still loading: wait


def test_start_gives_a_random_key_through_the_environment_not_the_command_line(monkeypatch, fake_launch):
    monkeypatch.setitem(sys.modules, "llama_cpp", types.ModuleType("llama_cpp"))
    monkeypatch.setitem(sys.modules, "llama_cpp.server", types.ModuleType("llama_cpp.server"))
    monkeypatch.setenv("HOST", "0.0.0.0")  # inherited: uvicorn would prefer it to --host
    monkeypatch.setenv("api_key", "inherited")  # pydantic-settings reads names case-insensitively
    keys = [fake_launch("llama-cpp-python", served_name=ALIAS).api_key for _ in range(2)]
    assert len(set(keys)) == 2 and all(k and len(k) >= 32 for k in keys)  # a new key per start
    for (cmd, env), key in zip(fake_launch.launched, keys):
        assert not any(key in arg for arg in cmd) and "--api_key" not in cmd
        assert env["API_KEY"] == key and env["HOST"] == "127.0.0.1" and env["PORT"] == "12345" and "api_key" not in env


def test_the_client_of_the_embedded_server_sends_its_key_not_kgopt_api_key(monkeypatch):
    from kgopt.clients import embedded
    from kgopt.clients.config import EndpointConfig
    from kgopt.clients.lm import connect

    monkeypatch.setenv("KGOPT_API_KEY", API_KEY)  # meant for a remote endpoint, not for 127.0.0.1
    with FakeEndpoint(respond=lambda req: (200, chat_response("{}"))) as srv:
        fake = types.SimpleNamespace(api_base=srv.url, api_key="embedded-key", program=embedded.server_program("llama-cpp-python"),
                                     model=types.SimpleNamespace(served_name="fake", filename="w.gguf", size=1, sha256="0" * 64))
        monkeypatch.setattr(embedded, "shared_embedded_server", lambda: fake)
        conn = connect(EndpointConfig(api_key=API_KEY), cache=False)
        conn.lm(messages=[{"role": "user", "content": "x"}])
    assert srv.headers[0]["Authorization"] == "Bearer embedded-key"


# --- item 5: a kgopt.toml that is read is said ------------------------------------------------


def test_a_kgopt_toml_in_use_is_reported_with_its_redacted_api_base(tmp_path, monkeypatch, logs):
    from kgopt.clients.config import resolve_endpoint

    toml = tmp_path / "kgopt.toml"
    toml.write_text(f'[endpoint]\napi_base = "http://u:{PW}@remote.example:9/v1?key={QKEY}"\nmodel = "m"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KGOPT_API_KEY", API_KEY)
    cfg = resolve_endpoint()
    assert cfg.api_base.startswith("http://u:")  # the file's URL is used, unredacted, to connect
    text = _text(logs)
    assert f"INFO using {toml.resolve()}: api_base http://u:***@remote.example:9/v1?key=***" in text
    assert "KGOPT_API_KEY is sent to http://u:***@remote.example:9/v1?key=***" in text
    other = tmp_path / "elsewhere.toml"
    other.write_text('[endpoint]\napi_base = "http://other:1/v1"\nmodel = "m"\napi_key = "sk-FILEKEY"\n', encoding="utf-8")
    monkeypatch.setenv("KGOPT_CONFIG", str(other))
    monkeypatch.setenv("KGOPT_API_BASE", "http://env:2/v1")
    monkeypatch.delenv("KGOPT_API_KEY")
    assert resolve_endpoint().api_base == "http://env:2/v1"
    text = _text(logs)
    assert f"using {other.resolve()}: api_base http://other:1/v1 (overridden by a flag or KGOPT_API_BASE); also sets api_key, model" in text
    assert f"the api_key in {other.resolve()} is sent to http://env:2/v1" in text  # the file's key follows the environment's URL
    _no_secret(text, PW, QKEY, API_KEY, "sk-FILEKEY")
