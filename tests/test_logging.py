"""The library logs through `logging` (a program that imports genrec decides what is shown);
the `genrec` command shows those records on stderr at the level it was given."""

import logging

import pytest

from genrec.artifacts import manifest, write_json_atomic
from genrec.cli import _command_name, main
from genrec.console_log import LEVEL_ENV, StderrHandler, configure_logging, log_level
from genrec.pipeline.run import StageTimes, _complete


@pytest.fixture
def genrec_logger():
    """The `genrec` logger as it was before the test: the CLI's handler and level are undone."""
    logger = logging.getLogger("genrec")
    handlers, level = list(logger.handlers), logger.level
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_a_stale_stage_is_reported_as_a_log_record_not_printed(tmp_path, caplog, capsys, monkeypatch):
    # a CLI test run earlier in this process may have left the console handler on "genrec"
    monkeypatch.setattr(logging.getLogger("genrec"), "handlers", [])
    stage = tmp_path / "sid"
    stage.mkdir()
    write_json_atomic(stage / "manifest.json", manifest({"levels": 1}))
    with caplog.at_level(logging.INFO, logger="genrec"):
        assert not _complete(stage, {"levels": 3})
        assert StageTimes().run("Semantic IDs", lambda: 7) == 7
    messages = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("genrec.pipeline.run", logging.INFO, f"{stage} was made with another levels; rebuilding it") in messages
    assert ("genrec.pipeline.run", logging.INFO, "== Semantic IDs") in messages
    assert capsys.readouterr() == ("", "")


def test_the_level_comes_from_the_option_then_the_environment_then_info(monkeypatch):
    monkeypatch.delenv(LEVEL_ENV, raising=False)
    assert log_level() == logging.INFO
    monkeypatch.setenv(LEVEL_ENV, "WARNING")
    assert log_level() == logging.WARNING
    assert log_level("debug") == logging.DEBUG  # the option wins over the environment
    monkeypatch.setenv(LEVEL_ENV, "loud")
    with pytest.raises(ValueError, match=LEVEL_ENV):
        log_level()


def test_the_cli_handler_writes_plain_lines_to_stderr_at_its_level_and_is_not_added_twice(genrec_logger, capsys):
    configure_logging(logging.INFO)
    configure_logging(logging.INFO)
    assert sum(isinstance(h, StderrHandler) for h in genrec_logger.handlers) == 1
    logging.getLogger("genrec.train.loop").info("step %d: loss=%.2f", 3, 0.5)
    logging.getLogger("genrec.train.loop").debug("not shown at INFO")
    out, err = capsys.readouterr()
    assert out == ""
    assert "INFO genrec.train.loop: step 3: loss=0.50" in err and "not shown" not in err


def test_the_cli_reads_log_level_before_the_command_and_refuses_an_unknown_one(genrec_logger, monkeypatch, capsys):
    assert _command_name(["--log-level", "debug", "data", "validate", "x"]) == "data"
    monkeypatch.delenv(LEVEL_ENV, raising=False)
    with pytest.raises(SystemExit):
        main(["--log-level", "DEBUG", "data", "validate", "--help"])
    assert "genrec data validate" in capsys.readouterr().out
    monkeypatch.setenv(LEVEL_ENV, "chatty")
    assert main(["data", "validate", "missing"]) == 2
    assert "GENREC_LOG_LEVEL" in capsys.readouterr().err
