"""`edge-agent check`'s broker lines against a real mosquitto (the telemetry tests' Broker, test CA
and password helpers): anonymous, password authentication, TLS with a test CA; a wrong password,
a missing login, an unknown CA and a plain port taken for TLS each FAIL with a one-sentence fix."""

import json
import subprocess
import sys

import pytest
from telemetry.telemetry_helpers import Broker, make_test_ca, password_file

from edge_agent.check.io import broker_checks
from edge_agent.config_loader import load_config
from service.service_helpers import ROOT, config_data, write_yaml


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def start_broker(tmp_path):
    started = []

    def start(extra="", tls=None):
        folder = tmp_path / "broker{}".format(len(started))
        folder.mkdir()
        started.append(Broker(folder, extra=extra, tls=tls).start())
        return started[-1]

    yield start
    for broker in started:
        broker.stop()


def _checks(model_path, **mqtt):
    config = load_config(None, config_data(model_path, mqtt=dict({"enabled": True, "host": "127.0.0.1"}, **mqtt)))
    return {c.name: c for c in broker_checks(config)}


def _password_broker(start_broker, tmp_path, tls=None):
    passwd = password_file(tmp_path, "cell-7", "right-one")
    return start_broker("allow_anonymous false\npassword_file {}".format(passwd), tls=tls)


def _secret(tmp_path, text, name="password-file"):
    path = tmp_path / name
    path.write_text(text + "\n")
    return str(path)


def test_anonymous_broker_through_the_cli(short_tmp, model_path, start_broker):
    broker = start_broker()
    data = config_data(model_path, mqtt={"enabled": True, "host": "127.0.0.1", "port": broker.port})
    proc = subprocess.run([sys.executable, "-m", "edge_agent.cli", "check", "--json", "--config",
                           str(write_yaml(short_tmp / "config.yaml", data))],
                          capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert [checks[n]["status"] for n in ("broker-dns", "broker-tcp", "broker-tls", "broker-mqtt")] == \
        ["pass", "pass", "info", "pass"], checks
    assert "anonymous" in checks["broker-mqtt"]["detail"]


def test_password_authentication(tmp_path, model_path, start_broker, monkeypatch):
    broker = _password_broker(start_broker, tmp_path)
    good = _checks(model_path, port=broker.port, username="cell-7", password_file=_secret(tmp_path, "right-one"))
    assert good["broker-mqtt"].status == "pass" and "user 'cell-7'" in good["broker-mqtt"].detail, good
    assert "right-one" not in str(good)

    wrong = _checks(model_path, port=broker.port, username="cell-7", password_file=_secret(tmp_path, "wrong"))
    assert "broker-mqtt" not in wrong
    auth = wrong["broker-auth"]
    assert auth.status == "fail" and "refused the connection (user 'cell-7')" in auth.detail, auth
    assert "mqtt.password_file" in auth.fix

    anonymous = _checks(model_path, port=broker.port)["broker-auth"]
    assert anonymous.status == "fail" and "anonymous" in anonymous.detail
    assert "set mqtt.username and mqtt.password_file" in anonymous.fix

    unreadable = _checks(model_path, port=broker.port, username="cell-7",
                         password_file=str(tmp_path / "missing"))["broker-auth"]
    assert unreadable.status == "fail" and "cannot read the broker password" in unreadable.detail
    assert "create the password file" in unreadable.fix

    credential = {"port": broker.port, "username": "cell-7", "password_credential": "mqtt-password"}
    without = _checks(model_path, **credential)["broker-auth"]  # a shell, not the service: no credential
    assert without.status == "fail" and "CREDENTIALS_DIRECTORY is not set" in without.detail
    assert "LoadCredential=mqtt-password:" in without.fix
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))  # as systemd sets it for the service
    _secret(tmp_path, "right-one", name="mqtt-password")
    assert _checks(model_path, **credential)["broker-mqtt"].status == "pass"


def test_tls_with_a_test_ca_and_password(tmp_path, model_path, start_broker, test_ca):
    broker = _password_broker(start_broker, tmp_path, tls=test_ca)
    login = {"port": broker.port, "username": "cell-7", "password_file": _secret(tmp_path, "right-one")}
    good = _checks(model_path, tls={"enabled": True, "ca_file": str(test_ca["ca"])}, **login)
    assert good["broker-tls"].status == "pass" and "TLSv1" in good["broker-tls"].detail, good
    assert good["broker-mqtt"].status == "pass" and "TLS" in good["broker-mqtt"].detail, good

    # the system CAs do not know the test CA: the certificate check fails, and says what to set
    unknown_ca = _checks(model_path, tls={"enabled": True}, **login)["broker-tls"]
    assert unknown_ca.status == "fail" and "certificate check failed" in unknown_ca.detail, unknown_ca
    assert "mqtt.tls.ca_file" in unknown_ca.fix

    missing_ca = _checks(model_path, tls={"enabled": True, "ca_file": str(tmp_path / "nope.crt")}, **login)
    assert missing_ca["broker-tls"].status == "fail" and "mqtt.tls" in missing_ca["broker-tls"].detail


def test_tls_against_a_plain_listener(tmp_path, model_path, start_broker, test_ca):
    broker = start_broker()
    result = _checks(model_path, port=broker.port, tls={"enabled": True, "ca_file": str(test_ca["ca"])})
    tls = result["broker-tls"]
    assert tls.status == "fail" and "TLS" in tls.detail and "TLS listener" in tls.fix, tls
    assert "broker-mqtt" not in result
