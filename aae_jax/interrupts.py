"""SIGTERM and Ctrl-C as requests to checkpoint and exit with status 0.

The first SIGTERM or Ctrl-C sets ``requested``: the training loop saves the
current step at the next chunk boundary and returns; before the loop, the run
stops before training. A second Ctrl-C exits at once, without a traceback (the
last checkpoint stays). ``aae_jax.main`` installs the handlers before its heavy
imports, so a signal while JAX loads or data is prepared is not lost either.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

from absl import logging

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupts:
  """The process's interrupt requests (one instance: ``INTERRUPTS``)."""

  def __init__(self):
    self.requested = False
    self.last_saved = 0  # for the second Ctrl-C's message
    self._previous = None

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    if self.requested and signum == signal.SIGINT:
      sys.stderr.write('aae_jax: second Ctrl-C: exiting now without saving; the last '
                       f'checkpoint (step {self.last_saved}) is kept.\n')
      sys.stderr.flush()
      os._exit(130)  # pylint: disable=protected-access
    logging.warning('%s: saving a checkpoint at the end of the current chunk, then exiting '
                    'with status 0; rerun the same command to resume%s.',
                    signal.Signals(signum).name,
                    ' (Ctrl-C again: exit now)' if signum == signal.SIGINT else '')
    self.requested = True

  def install(self) -> bool:
    """Installs the handlers (main thread only); False if already installed or not possible."""
    if self._previous is not None or threading.current_thread() is not threading.main_thread():
      return False
    self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
    return True

  def uninstall(self) -> None:
    if self._previous is not None:
      for s, previous in self._previous.items():
        signal.signal(s, previous)
      self._previous = None
    self.requested = False

  @contextlib.contextmanager
  def handling(self):
    """The handlers for a ``with`` block (kept if someone installed them before)."""
    mine = self.install()
    try:
      yield self
    finally:
      if mine:
        self.uninstall()


INTERRUPTS = Interrupts()
