"""The C test harness: a trusted driver process and the runner that calls the sample, and their report.

Two programs are generated from a task's structured checks
(:class:`~prmforge.languages.code_program.CTests`):

- the **runner** (:func:`stub_source`, linked with the sample's checked
  object): ``runner I`` declares check I's buffers, runs its setup and call,
  writes one message (``R``, the raw value, the compared buffers) to fd 3 and
  ``_exit``\\ s. It holds no expected value, no nonce, no descriptor but
  ``/dev/null`` (stdin, stdout), stderr and its result pipe.
- the **driver** (:func:`driver_source`), which never links sample code. It
  makes itself non-dumpable (no other process can read its memory or
  descriptors through ``/proc``), opens the runner and unlinks both binaries
  (the expected values exist only in its memory), then for each check forks a
  child that moves to its own process group, puts ``/dev/null`` on stdin and
  stdout, closes every other descriptor but the result pipe and ``execveat``\\ s
  the runner. It waits for the child without reaping it, kills its process
  group, reads the pipe without blocking and compares the message with the
  expected values in its own memory. A child that crashes, exits early, sends
  a malformed message or a wrong value fails that check; the driver stops at
  the first failed check. Only then does it read the run's nonce from stdin
  and write the report (:func:`parse_report`) to stdout, which no runner ever
  holds.

The host accepts PASS only when the report carries this run's nonce and all
N checks passed, and the sandbox's own verdict of the driver is PASS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from prmforge.languages.code_program import C_SCALAR_TYPES, MAX_MESSAGE, CBuffer, CCheck, CTests

__all__ = ["DRIVER_ERRORS", "CheckResult", "Report", "driver_source", "parse_report", "stub_source"]

DETAIL: Final = 240
DRIVER_ERRORS: Final = {3: "the driver could not set itself up", 4: "the driver got no valid nonce"}
"""The driver's own exit codes (before any sample code ran, or reading the nonce): INFRA_ERROR."""
_STD_HEADERS: Final = "".join(
    f"#include <{h}>\n" for h in ("stdbool.h", "stddef.h", "stdint.h", "stdlib.h", "string.h", "unistd.h")
)
_DRIVER_HEADERS: Final = "".join(
    f"#include <{h}>\n"
    for h in ("errno.h", "fcntl.h", "signal.h", "stdio.h", "sys/prctl.h", "sys/syscall.h", "sys/wait.h")
)

# ---- the runner's stub (sample side) --------------------------------------------------------------


def _declare(buffer: CBuffer) -> str:
    return f"    {buffer.type} {buffer.name}[{buffer.length}] = {buffer.init or '{0}'};\n"


def _stub_check(index: int, check: CCheck) -> str:
    body = "".join(_declare(b) for b in check.buffers)
    if check.setup:
        body += f"    {{ {check.setup} }}\n"
    if check.returns == "void":
        body += f"    (void)({check.call});\n    prmforge_len = 0;\n    prmforge_msg[prmforge_len++] = 'R';\n"
    else:
        body += (f"    {check.returns} prmforge_r = ({check.call});\n    prmforge_len = 0;\n"
                 "    prmforge_msg[prmforge_len++] = 'R';\n"
                 "    prmforge_put(&prmforge_r, sizeof prmforge_r);\n")  # fmt: skip
    body += "".join(f"    prmforge_put({b.name}, sizeof {b.name});\n" for b in check.buffers if b.expect)
    return f"static void prmforge_check_{index}(void) {{\n{body}}}\n"


def stub_source(tests: CTests, prelude: str) -> str:
    """The runner's ``main`` (its own translation unit; linked with the sample's checked object)."""
    cases = "".join(f"    case {i}: prmforge_check_{i}(); break;\n" for i in range(len(tests.checks)))
    return (
        f"{prelude}\n{_STD_HEADERS}{tests.prototype}\n"
        f"static unsigned char prmforge_msg[{MAX_MESSAGE + 1}];\nstatic size_t prmforge_len;\n"
        "static void prmforge_put(const void *p, size_t n) {\n"
        "    const unsigned char *s = p;\n"
        f"    for (size_t k = 0; k < n && prmforge_len < {MAX_MESSAGE + 1}; k++)\n"
        "        prmforge_msg[prmforge_len++] = s[k];\n"
        "}\n"
        + "".join(_stub_check(i, c) for i, c in enumerate(tests.checks))
        + "int main(int argc, char **argv) {\n"
        "    if (argc != 2) return 120;\n"
        "    switch (strtol(argv[1], NULL, 10)) {\n"
        f"{cases}    default: return 121;\n    }}\n"
        "    for (size_t off = 0; off < prmforge_len;) {\n"
        "        ssize_t w = write(3, prmforge_msg + off, prmforge_len - off);\n"
        "        if (w <= 0) return 122;\n"
        "        off += (size_t)w;\n"
        "    }\n"
        "    _exit(0);\n"
        "}\n"
    )  # fmt: skip


# ---- the driver (trusted side) ---------------------------------------------------------------------

_FORMATS: Final = {"int": ("%lld", "long long"), "uint": ("%llu", "unsigned long long"),
                   "float": ("%.17g", "double"), "bool": ("%d", "int")}  # fmt: skip


def _equal(kind: str, got: str, want: str, tolerance: float | None) -> str:
    if kind != "float":
        return f"({got} == {want})"
    tol = repr(float(tolerance or 0.0))
    return f"prmforge_close((double)({got}), (double)({want}), {tol})"


def _compare_value(check: CCheck) -> str:
    type_, kind = check.returns, C_SCALAR_TYPES[check.returns][1]
    fmt, cast = _FORMATS[kind]
    head = f"    {type_} prmforge_got;\n"
    if kind == "bool":
        head = ("    if (*prmforge_m > 1) {\n"
                '        snprintf(prmforge_d, PRMFORGE_DETAIL, "returned an invalid bool (byte %d)",\n'
                "                 *prmforge_m);\n"
                "        return 0;\n    }\n") + head  # fmt: skip
    return (
        f"{head}    memcpy(&prmforge_got, prmforge_m, sizeof prmforge_got);\n"
        "    prmforge_m += sizeof prmforge_got;\n"
        f"    const {type_} prmforge_want = ({check.expect});\n"
        f"    if (!{_equal(kind, 'prmforge_got', 'prmforge_want', check.tolerance)}) {{\n"
        f'        snprintf(prmforge_d, PRMFORGE_DETAIL, "returned {fmt}, expected {fmt}", '
        f"({cast})prmforge_got, ({cast})prmforge_want);\n        return 0;\n    }}\n"
    )


def _compare_buffer(check: CCheck, buffer: CBuffer) -> str:
    kind = C_SCALAR_TYPES[buffer.type][1]
    fmt, cast = _FORMATS[kind]
    n = buffer.length
    count = f"{n}" if buffer.compare == "all" else f"prmforge_strlen((const char *)prmforge_w, {n})"
    mismatch = (
        f"snprintf(prmforge_d, PRMFORGE_DETAIL, \"{buffer.name}[%zu] is {fmt}, expected {fmt}\", prmforge_j, "
        f"({cast})prmforge_g[prmforge_j], ({cast})prmforge_w[prmforge_j]);"
        if buffer.compare == "all" else
        f"prmforge_strings(prmforge_d, \"{buffer.name}\", (const unsigned char *)prmforge_g, "
        f"(const unsigned char *)prmforge_w, prmforge_n);"
    )  # fmt: skip
    return (
        f"    {{\n        static const {buffer.type} prmforge_w[{n}] = {buffer.expect};\n"
        f"        {buffer.type} prmforge_g[{n}];\n"
        "        memcpy(prmforge_g, prmforge_m, sizeof prmforge_g);\n"
        "        prmforge_m += sizeof prmforge_g;\n"
        f"        size_t prmforge_n = {count};\n"
        "        for (size_t prmforge_j = 0; prmforge_j < prmforge_n; prmforge_j++) {\n"
        f"            if (!{_equal(kind, 'prmforge_g[prmforge_j]', 'prmforge_w[prmforge_j]', None)}) {{\n"
        f"                {mismatch}\n                return 0;\n            }}\n        }}\n    }}\n"
    )


def _driver_check(index: int, check: CCheck) -> str:
    body = "" if check.returns == "void" else _compare_value(check)
    body += "".join(_compare_buffer(check, b) for b in check.buffers if b.expect)
    return (f"static int prmforge_cmp_{index}(const unsigned char *prmforge_m, char *prmforge_d) {{\n"
            f"    (void)prmforge_m;\n    (void)prmforge_d;\n{body}    return 1;\n}}\n")  # fmt: skip


def _wire_size(check: CCheck) -> str:
    parts = ["1"] if check.returns == "void" else ["1", f"sizeof({check.returns})"]
    parts += [f"sizeof({b.type}[{b.length}])" for b in check.buffers if b.expect]
    return " + ".join(parts)


_DRIVER_MAIN: Final = r"""
static void prmforge_die(const char *what) {
    dprintf(2, "prmforge driver: %s: %s\n", what, strerror(errno));
    _exit(3);
}

static void prmforge_close_from(int low) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)low, ~0U, 0) == 0) return;
#endif
    long high = sysconf(_SC_OPEN_MAX);
    for (long fd = low; fd < (high > 0 ? high : 65536); fd++) close((int)fd);
}

static char prmforge_run(int index, int runner, int devnull, char *detail, int *number) {
    int p[2];
    *number = 0;
    if (pipe2(p, O_CLOEXEC) != 0) {
        snprintf(detail, PRMFORGE_DETAIL, "pipe: %s", strerror(errno));
        return 'E';
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(detail, PRMFORGE_DETAIL, "fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return 'E';
    }
    if (pid == 0) {
        for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
        char arg[16];
        snprintf(arg, sizeof arg, "%d", index);
        char *argv[] = {"runner", arg, NULL};
        char *envp[] = {NULL};
        int pw = fcntl(p[1], F_DUPFD_CLOEXEC, 10), rf = fcntl(runner, F_DUPFD_CLOEXEC, 10);
        int dn = fcntl(devnull, F_DUPFD_CLOEXEC, 10);
        if (pw < 0 || rf < 0 || dn < 0 || setpgid(0, 0) != 0 || dup2(dn, 0) != 0 || dup2(dn, 1) != 1
            || dup2(pw, 3) != 3 || dup3(rf, 4, O_CLOEXEC) != 4)
            _exit(126);
        prmforge_close_from(5);
        syscall(SYS_execveat, 4, "", argv, envp, AT_EMPTY_PATH);
        _exit(127);
    }
    setpgid(pid, pid);
    close(p[1]);
    siginfo_t info;
    memset(&info, 0, sizeof info);
    while (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT) != 0 && errno == EINTR) {}
    kill(-pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    static unsigned char msg[PRMFORGE_MAX + 1];
    size_t len = 0;
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    while (len < sizeof msg) {
        ssize_t r = read(p[0], msg + len, sizeof msg - len);
        if (r > 0) len += (size_t)r;
        else if (!(r < 0 && errno == EINTR)) break;
    }
    close(p[0]);
    if (info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED) {
        *number = info.si_status;
        snprintf(detail, PRMFORGE_DETAIL, "killed by signal %d (%s)", info.si_status,
                 strsignal(info.si_status));
        return 'S';
    }
    if (info.si_code != CLD_EXITED || info.si_status != 0) {
        *number = info.si_status;
        snprintf(detail, PRMFORGE_DETAIL, "exited with status %d before returning", info.si_status);
        return 'X';
    }
    if (len == 0) {
        snprintf(detail, PRMFORGE_DETAIL, "exited with status 0 before returning");
        return 'X';
    }
    if (len != prmforge_table[index].len || msg[0] != 'R') {
        snprintf(detail, PRMFORGE_DETAIL, "sent a malformed result (%zu bytes)", len);
        return 'X';
    }
    return prmforge_table[index].cmp(msg + 1, detail) ? 'P' : 'W';
}

static void prmforge_clean(char *s) {
    for (; *s; s++) if (*s < 0x20 || *s > 0x7e) *s = '?';
}

int main(void) {
    /* Every signal a runner can send is ignored (SIGCHLD keeps its default: waitid needs it);
       SIGKILL and SIGSTOP cannot be, and end in CRASH or TIMEOUT. Children reset all before exec. */
    for (int sig = 1; sig < NSIG; sig++) signal(sig, sig == SIGCHLD ? SIG_DFL : SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
        prmforge_die("prctl");
    int runner = open("runner", O_RDONLY | O_CLOEXEC);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (runner < 0 || devnull < 0) prmforge_die("open");
    if (unlink("driver") != 0 || unlink("runner") != 0) prmforge_die("unlink");
    static char detail[PRMFORGE_CHECKS][PRMFORGE_DETAIL];
    static char code[PRMFORGE_CHECKS];
    static int number[PRMFORGE_CHECKS];
    int ran = 0;
    while (ran < PRMFORGE_CHECKS) {
        code[ran] = prmforge_run(ran, runner, devnull, detail[ran], &number[ran]);
        prmforge_clean(detail[ran]);
        if (code[ran++] != 'P') break;
    }
    char nonce[64];
    size_t got = 0;
    while (got < sizeof nonce && memchr(nonce, '\n', got) == NULL) {
        ssize_t r = read(0, nonce + got, sizeof nonce - got);
        if (r > 0) got += (size_t)r;
        else if (!(r < 0 && errno == EINTR)) break;
    }
    if (got != 33 || nonce[32] != '\n') _exit(4);
    for (int k = 0; k < 32; k++)
        if (!((nonce[k] >= '0' && nonce[k] <= '9') || (nonce[k] >= 'a' && nonce[k] <= 'f'))) _exit(4);
    nonce[32] = '\0';
    static char report[64 + PRMFORGE_CHECKS * (PRMFORGE_DETAIL + 32) + 64];
    size_t at = (size_t)snprintf(report, sizeof report, "prmforge-c-report v1 nonce=%s checks=%d ran=%d\n",
                                 nonce, PRMFORGE_CHECKS, ran);
    for (int k = 0; k < ran; k++)
        at += (size_t)snprintf(report + at, sizeof report - at, "check %d %c %d %s\n", k, code[k], number[k],
                               detail[k]);
    at += (size_t)snprintf(report + at, sizeof report - at, "end nonce=%s\n", nonce);
    for (size_t off = 0; off < at;) {
        ssize_t w = write(1, report + off, at - off);
        if (w > 0) off += (size_t)w;
        else if (!(w < 0 && errno == EINTR)) _exit(3);
    }
    _exit(0);
}
"""

_DRIVER_HELPERS: Final = r"""
__attribute__((unused)) static int prmforge_close(double g, double w, double tol) {
    if (g == w || (g != g && w != w)) return 1;
    return (g > w ? g - w : w - g) <= tol;
}

__attribute__((unused)) static size_t prmforge_strlen(const char *s, size_t cap) {
    size_t n = 0;
    while (n < cap && s[n]) n++;
    return n < cap ? n + 1 : cap;
}

static void prmforge_quote(char *out, size_t cap, const unsigned char *s, size_t n) {
    size_t at = 0;
    for (size_t k = 0; k < n && s[k] && at + 5 < cap; k++) {
        int plain = s[k] >= 0x20 && s[k] < 0x7f && s[k] != '"' && s[k] != '\\';
        at += (size_t)snprintf(out + at, cap - at, plain ? "%c" : "\\x%02x", s[k]);
    }
    out[at] = '\0';
}

__attribute__((unused)) static void prmforge_strings(char *d, const char *name, const unsigned char *g,
                                                     const unsigned char *w, size_t n) {
    char gq[96], wq[96];
    prmforge_quote(gq, sizeof gq, g, n);
    prmforge_quote(wq, sizeof wq, w, n);
    snprintf(d, PRMFORGE_DETAIL, "%s is \"%s\", expected \"%s\"", name, gq, wq);
}
"""


def driver_source(tests: CTests, prelude: str) -> str:
    """The trusted driver: its own translation unit, never linked with sample code."""
    n = len(tests.checks)
    table = ",\n".join(f"    {{{_wire_size(c)}, prmforge_cmp_{i}}}" for i, c in enumerate(tests.checks))
    return (
        f"#define _GNU_SOURCE\n{prelude}\n{_STD_HEADERS}{_DRIVER_HEADERS}"
        f"#define PRMFORGE_CHECKS {n}\n#define PRMFORGE_DETAIL {DETAIL}\n#define PRMFORGE_MAX {MAX_MESSAGE}\n"
        f"{_DRIVER_HELPERS}\n"
        + "".join(_driver_check(i, c) for i, c in enumerate(tests.checks))
        + "static const struct { size_t len; int (*cmp)(const unsigned char *, char *); } "
        f"prmforge_table[{n}] = {{\n{table}\n}};\n"
        f"{_DRIVER_MAIN}"
    )


# ---- the report ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    index: int
    code: str
    number: int
    detail: str


@dataclass(frozen=True, slots=True)
class Report:
    checks: int
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return len(self.results) == self.checks and all(r.code == "P" for r in self.results)


_HEAD = re.compile(r"prmforge-c-report v1 nonce=([0-9a-f]{32}) checks=([0-9]{1,4}) ran=([0-9]{1,4})")
_LINE = re.compile(rf"check ([0-9]{{1,4}}) ([PWXSE]) (-?[0-9]{{1,10}}) ([\x20-\x7e]{{0,{DETAIL}}})")
_END = re.compile(r"end nonce=([0-9a-f]{32})")


def parse_report(stdout: bytes, nonce: str, checks: int) -> Report | str:
    """The driver's report in ``stdout`` (all of it), or why it is not a valid report for this run."""
    try:
        lines = stdout.decode("ascii").split("\n")
    except UnicodeDecodeError:
        return "the report is not ASCII"
    if len(lines) < 3 or lines[-1] != "":
        return "no complete report from the test driver"
    head, end = _HEAD.fullmatch(lines[0]), _END.fullmatch(lines[-2])
    if head is None or end is None:
        return "no report header and end line from the test driver"
    if head.group(1) != nonce or end.group(1) != nonce:
        return "the report does not carry this run's nonce"
    total, ran = int(head.group(2)), int(head.group(3))
    body = lines[1:-2]
    if total != checks or len(body) != ran or not 1 <= ran <= checks:
        return f"the report covers {ran} of {total} checks, expected up to {checks}"
    results = []
    for index, line in enumerate(body):
        match = _LINE.fullmatch(line)
        if match is None or int(match.group(1)) != index:
            return f"malformed report line {index + 1}"
        results.append(CheckResult(index, match.group(2), int(match.group(3)), match.group(4)))
    if any(r.code != "P" for r in results[:-1]):
        return "the report goes on after a failed check"
    return Report(checks, tuple(results))
