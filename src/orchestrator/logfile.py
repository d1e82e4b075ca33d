"""The log file: rotated at LOG_MAX_BYTES, keeping LOG_BACKUPS old files, so logging (one line
per transition, per refused connection, ...) can never fill the disk."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler

from orchestrator.settings import Settings


class _RotatingLog(RotatingFileHandler):
    """RotatingFileHandler that, keeping no backups, starts the file over at the limit.

    The standard handler never rolls over with backupCount=0, so its file would grow without
    bound: LOG_BACKUPS=0 means "keep no old lines", not "no limit".
    """

    def doRollover(self) -> None:
        """Rename the files along, or with no backups truncate the one file."""
        if self.backupCount > 0:
            super().doRollover()
            return
        if self.stream is not None:
            self.stream.close()
        self.stream = open(self.baseFilename, "w", encoding=self.encoding)  # noqa: SIM115

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        """At the size limit (with or without backups)."""
        if self.stream is None:
            self.stream = self._open()
        if self.maxBytes <= 0:
            return False
        size = self.stream.tell() + len(f"{self.format(record)}\n")
        return self.stream.tell() > 0 and size > self.maxBytes


def rotating_log_file(settings: Settings) -> logging.Handler:
    """The handler that writes LOG_FILE, rotating at LOG_MAX_BYTES with LOG_BACKUPS old files
    (`LOG_FILE.1` the newest)."""
    return _RotatingLog(
        settings.log_file,
        maxBytes=settings.log_max_bytes,
        backupCount=settings.log_backups,
        encoding="utf-8",
    )
