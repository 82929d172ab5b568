"""FarmPlug: the Deadline application plugin that runs one farmplug task per Deadline task.

Runs inside the Deadline Worker's Python, so it imports nothing but the standard library and
Deadline's scripting API (never farmplug). A job made by ``farmplug submit --farm deadline``
carries two plugin info entries:

* ``Executable``: the farmplug executable the submitter named (``farmplug`` by default); the
  admin can list per-OS paths in Configure Plugins > FarmPlug (``FarmPlugExecutable``).
* ``ArgumentsJson``: the JSON list of arguments after the executable, with the token
  ``{frames}`` where the task's frames go.

The task's frames come from the current task's frame list (stepped frame lists such as
``1-11x2`` included), formatted exactly as farmplug's ``format_frame_set`` does, so the command
is the one the job graph holds and farmplug derives the same task id and timing record path.

Deadline's managed process takes the arguments as one string, which .NET splits back into an
argument list with the Windows (MSVCRT) rules on every OS. Each argument is quoted for those
rules, and the plugin splits the string back itself and fails the task rather than run a
command that differs from the JSON list by one character.

Progress: farmplug prints progress bars (``render render-0001-0008:  38%|...``) that the
stdout handlers turn into the task's progress; ``farmplug: error: ...`` fails the task with
that message.
"""

import json
import os
import re
import shutil

from Deadline.Plugins import DeadlinePlugin, PluginType
from Deadline.Scripting import FileUtils, RepositoryUtils

FRAMES_TOKEN = "{frames}"
PROGRESS_PATTERN = r"[\w.-]+ ([\w.-]+):\s+(\d{1,3})%\|"
ERROR_PATTERN = r"farmplug: error: (.*)$"
# Arguments made only of these characters need no quotes under any argument-splitting rule.
_BARE = re.compile(r"^[A-Za-z0-9_./:=,@+%-]+$")


def GetDeadlinePlugin():
    """Called by Deadline to get an instance of the plugin."""
    return FarmPlugPlugin()


def CleanupDeadlinePlugin(deadlinePlugin):
    """Called by Deadline when the plugin is unloaded."""
    deadlinePlugin.Cleanup()


def format_frame_set(frames):
    """A compact frame set, ``1-23x2,24``: the same text as ``farmplug.frames.format_frame_set``.

    Runs of three or more frames with a constant step become ``A-BxS`` (``A-B`` for step 1).
    """
    frames = sorted(set(int(f) for f in frames))
    pieces = []
    i = 0
    while i < len(frames):
        j = i + 1
        if j < len(frames):
            step = frames[j] - frames[i]
            while j + 1 < len(frames) and frames[j + 1] - frames[j] == step:
                j += 1
            if j - i >= 2 or (step == 1 and j - i >= 1):
                pieces.append(f"{frames[i]}-{frames[j]}" + (f"x{step}" if step != 1 else ""))
                i = j + 1
                continue
        pieces.append(str(frames[i]))
        i += 1
    return ",".join(pieces)


def task_arguments(arguments_json, frames, map_path=None):
    """The argument list of one task: the template with ``{frames}`` replaced by the task's frames.

    ``map_path`` (Deadline's path mapping) is applied to every other argument, one at a time.
    """
    template = json.loads(arguments_json)
    if not isinstance(template, list) or not all(isinstance(a, str) for a in template):
        raise ValueError("ArgumentsJson must be a JSON list of strings")
    frame_set = format_frame_set(frames)
    argv = []
    for argument in template:
        if argument == FRAMES_TOKEN:
            argv.append(frame_set)
        else:
            argv.append(map_path(argument) if map_path else argument)
    return argv


def quote_argument(argument):
    """One argument quoted for the Windows/.NET argument-splitting rules (CommandLineToArgvW)."""
    if _BARE.match(argument):
        return argument
    quoted = ['"']
    backslashes = 0
    for ch in argument:
        if ch == "\\":
            backslashes += 1
            continue
        if ch == '"':
            # Backslashes before a quote are doubled, and the quote itself is escaped.
            quoted.append("\\" * (2 * backslashes + 1) + '"')
        else:
            quoted.append("\\" * backslashes + ch)
        backslashes = 0
    # Backslashes before the closing quote are doubled so they stay literal.
    quoted.append("\\" * (2 * backslashes) + '"')
    return "".join(quoted)


def join_arguments(argv):
    """The argument string for Deadline's managed process."""
    return " ".join(quote_argument(a) for a in argv)


def split_arguments(line):
    """Split an argument string the way .NET's Process does on Linux and macOS (and the MSVCRT
    does on Windows): spaces and tabs separate, double quotes group, backslashes escape quotes."""
    argv = []
    i = 0
    n = len(line)
    while i < n:
        while i < n and line[i] in " \t":
            i += 1
        if i == n:
            break
        current = []
        in_quotes = False
        while i < n:
            backslashes = 0
            while i < n and line[i] == "\\":
                i += 1
                backslashes += 1
            if backslashes:
                if i >= n or line[i] != '"':
                    current.append("\\" * backslashes)
                else:
                    current.append("\\" * (backslashes // 2))
                    if backslashes % 2:
                        current.append('"')
                        i += 1
                continue
            ch = line[i]
            if ch == '"':
                if in_quotes and i + 1 < n and line[i + 1] == '"':
                    current.append('"')
                    i += 1
                else:
                    in_quotes = not in_quotes
                i += 1
                continue
            if ch in " \t" and not in_quotes:
                break
            current.append(ch)
            i += 1
        argv.append("".join(current))
    return argv


class FarmPlugPlugin(DeadlinePlugin):
    """A simple (managed process) plugin: one farmplug command line per Deadline task."""

    def __init__(self):
        self.InitializeProcessCallback += self.InitializeProcess
        self.RenderExecutableCallback += self.RenderExecutable
        self.RenderArgumentCallback += self.RenderArgument

    def Cleanup(self):
        for stdoutHandler in self.StdoutHandlers:
            del stdoutHandler.HandleCallback
        del self.InitializeProcessCallback
        del self.RenderExecutableCallback
        del self.RenderArgumentCallback

    def InitializeProcess(self):
        self.PluginType = PluginType.Simple
        # A task is a chunk of frames (farmplug loads its model once per chunk).
        self.SingleFramesOnly = False
        self.UseProcessTree = True
        self.StdoutHandling = True
        self.PopupHandling = False
        self.AddStdoutHandlerCallback(PROGRESS_PATTERN).HandleCallback += self.HandleProgress
        self.AddStdoutHandlerCallback(ERROR_PATTERN).HandleCallback += self.HandleError

    def TaskFrames(self):
        """The current task's frames: its frame list (stepped lists too), else start..end."""
        frames = []
        try:
            frames = [int(f) for f in self.GetCurrentTask().TaskFrameList]
        except (AttributeError, TypeError, ValueError):
            frames = []
        if not frames:
            frames = list(range(int(self.GetStartFrame()), int(self.GetEndFrame()) + 1))
        return sorted(set(frames))

    def TaskArguments(self):
        try:
            return task_arguments(self.GetPluginInfoEntry("ArgumentsJson"), self.TaskFrames(),
                                  RepositoryUtils.CheckPathMapping)
        except ValueError as err:
            self.FailRender(f"FarmPlug: bad ArgumentsJson in the plugin info: {err}")

    def RenderExecutable(self):
        wanted = self.GetPluginInfoEntryWithDefault("Executable", "farmplug").strip() or "farmplug"
        mapped = RepositoryUtils.CheckPathMapping(wanted)
        if os.path.isabs(mapped) and os.path.isfile(mapped):
            return mapped
        configured = FileUtils.SearchFileList(self.GetConfigEntryWithDefault("FarmPlugExecutable", ""))
        if configured:
            return configured
        on_path = shutil.which(mapped)
        if on_path:
            return on_path
        self.FailRender(
            f"FarmPlug: farmplug executable {wanted!r} not found on this worker; install farmplug on the "
            "PATH or set its path in Configure Plugins > FarmPlug"
        )

    def RenderArgument(self):
        argv = self.TaskArguments()
        line = join_arguments(argv)
        if split_arguments(line) != argv:
            self.FailRender(f"FarmPlug: the arguments cannot be passed safely: {json.dumps(argv)}")
        self.LogInfo(f"FarmPlug: arguments (JSON): {json.dumps(argv)}")
        return line

    def HandleProgress(self):
        percent = min(100.0, float(self.GetRegexMatch(2)))
        self.SetProgress(percent)
        self.SetStatusMessage(f"{self.GetRegexMatch(1)} {percent:.0f}%")

    def HandleError(self):
        self.FailRender("farmplug: " + self.GetRegexMatch(1))
