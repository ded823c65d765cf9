"""Wrong C code never PASSes: attacks on the compile-test harness, each with its exact verdict.

Every attack pairs a wrong ``gcd`` (it returns 0, or dies) with a way to make the old harness
(the tests' ``main`` compiled into the sample's binary, exit code 0 = PASS) report PASS. Each runs
for real: gcc and objcopy in a jail, the object checks on the host, the trusted driver in a jail,
in a fresh jail per run and in a warm pool.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from typing import Any

import pytest

from prmforge.languages.code_program import CodeSpec, code_spec_of
from prmforge.suites.code import apply_bug, code_tasks, generate_code_problems
from prmforge.verifiers import c_harness
from prmforge.verifiers.c_driver import parse_report
from prmforge.verifiers.c_object import object_violation
from prmforge.verifiers.compile_test import CompileTestVerifier, Outcome
from prmforge.verifiers.sandbox import IsolationUnavailable, PythonSandboxPool, Sandbox, SandboxLimits
from prmforge.verifiers.verdict import Verdict

PROBLEMS = {p.meta["task"]: p for p in generate_code_problems(16, 0)}
C_TASKS = [t for t in code_tasks() if t.language == "c"]
GCD = code_spec_of(PROBLEMS["gcd_c"])
HEADERS = "#include <unistd.h>\n#include <signal.h>\n#include <stdio.h>\n#include <fcntl.h>\n"
WRONG = "int gcd(int a, int b) { (void)a; (void)b; return 0; }\n"
RIGHT = "int gcd(int a, int b) { while (b) { int t = a % b; a = b; b = t; } return a; }\n"
EXIT_NOW = "__attribute__((used)) static void hook(void) { _exit(0); }\n"
LIMITS = SandboxLimits(wall_s=1.0, address_space_bytes=256 << 20, pids=8)
ARM = platform.machine() in ("aarch64", "arm64")
EXIT_ASM = "mov x8, #94\\nmov x0, #0\\nsvc #0" if ARM else "mov $231, %eax\\nxor %edi, %edi\\nsyscall"
"""exit_group(0) written as instructions (no libc call to see)."""
IRELATIVE = "R_AARCH64_IRELATIVE" if ARM else "R_X86_64_IRELATIVE"


class Counting:
    """The real sandbox (or pool), counting its jail launches."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def exec(self, argv: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.inner.exec(argv, **kwargs)


@pytest.fixture(scope="module", params=["fresh", "pool"])
def verifier(request: pytest.FixtureRequest) -> Iterator[CompileTestVerifier]:
    try:
        if request.param == "fresh":
            yield CompileTestVerifier(Counting(Sandbox()), run_limits=LIMITS)
            return
        with PythonSandboxPool(size=1) as pool:
            yield CompileTestVerifier(Counting(pool), pool, run_limits=LIMITS)
    except IsolationUnavailable as err:
        pytest.skip(f"sandbox unavailable here: {err}")


def judge(verifier: CompileTestVerifier, body: str, spec: CodeSpec = GCD) -> Outcome:
    return verifier.run_c(spec, f"{spec.prelude}\n{body}")


def launches(verifier: CompileTestVerifier, body: str) -> tuple[Outcome, int]:
    counter = verifier.sandbox
    assert isinstance(counter, Counting)
    judge(verifier, RIGHT)  # the task's driver is built (once) before counting
    before = counter.calls
    outcome = judge(verifier, body)
    return outcome, counter.calls - before


def asm(section: str, kind: str = "") -> str:
    """A hand-written table entry pointing at ``hook`` in ``section``."""
    return f'__asm__(".section {section},\\"aw\\"{kind}\\n.quad hook\\n.previous");\n'


# ---- rules on the object file: FAIL before anything of the sample runs -----------------------------

OBJECT_ATTACKS = [
    ("constructor", "__attribute__((constructor)) static void f(void) { _exit(0); }\n",
     "section .init_array"),
    ("constructor-priority", "__attribute__((constructor(101))) static void f(void) { _exit(0); }\n",
     "section .init_array.00101"),
    ("destructor", "__attribute__((destructor)) static void f(void) { _exit(0); }\n", "section .fini_array"),
    ("section-attribute",
     EXIT_NOW + "static void (*p)(void) __attribute__((section(\".init_array\"), used)) = hook;\n",
     "section .init_array"),
    ("asm-init-array", EXIT_NOW + asm(".init_array"), "section .init_array"),
    ("asm-init-array-priority", EXIT_NOW + asm(".init_array.00099"), "section .init_array.00099"),
    ("asm-preinit-array", EXIT_NOW + asm(".preinit_array"), "section .preinit_array"),
    ("asm-ctors", EXIT_NOW + asm(".ctors"), "section .ctors"),
    ("asm-dtors", EXIT_NOW + asm(".dtors"), "section .dtors"),
    ("asm-fini-array", EXIT_NOW + asm(".fini_array"), "section .fini_array"),
    ("init-array-type-under-a-data-name", EXIT_NOW + asm(".data.hook", kind=",@init_array"),
     "section .data.hook has SHT_INIT_ARRAY"),
    ("asm-init-code", f'__asm__(".section .init,\\"ax\\"\\n{EXIT_ASM}\\n.previous");\n',
     "section .init runs code"),
    ("custom-section", "__attribute__((section(\"hooks\"), used)) static int x = 1;\n", "section 'hooks'"),
    ("interp-section", "__attribute__((section(\".interp\"), used)) static const char x[] = \"/box/ld\";\n",
     "section '.interp'"),
    ("got-section", "__attribute__((section(\".got\"), used)) static long x = 1;\n", "section '.got'"),
    ("main", "int main(void) { return 0; }\n", "defines main"),
    ("_start", "void _start(void) { _exit(0); }\n", "defines _start"),
    ("_init", "void _init(void) { _exit(0); }\n", "defines _init"),
    ("interpose-memcmp",
     "int memcmp(const void *a, const void *b, size_t n) { (void)a; (void)b; (void)n; return 0; }\n",
     "defines memcmp"),
    ("interpose-strcmp", "int strcmp(const char *a, const char *b) { (void)a; (void)b; return 0; }\n",
     "defines strcmp"),
    ("interpose-exit", "void exit(int c) { (void)c; _exit(0); }\n", "defines exit"),
    ("interpose-write",
     "ssize_t write(int f, const void *p, size_t n) { (void)f; (void)p; return (ssize_t)n; }\n",
     "defines write"),
    ("interpose-fork", "pid_t fork(void) { return 0; }\n", "defines fork"),
    ("interpose-weak", "__attribute__((weak)) int memcmp(const void *a, const void *b, size_t n) "
     "{ (void)a; (void)b; (void)n; return 0; }\n", "defines memcmp"),
    ("interpose-asm", '__asm__(".globl write\\n.type write, %function\\nwrite:\\n.byte 0\\n");\n',
     "defines write"),
    ("interpose-symver",
     "int my_write(void) { return 0; }\n__asm__(\".symver my_write, write@@GLIBC_2.2.5\");\n",
     "defines write@@GLIBC_2.2.5"),
    ("reserved-name", "int __libc_start_main(void) { return 0; }\n", "defines __libc_start_main"),
    ("common-symbol", "__attribute__((common)) int environ;\n", "environ is a common symbol"),
    ("ifunc-helper",
     "static int impl(void) { return 0; }\nstatic void *resolve(void) { _exit(0); return (void *)impl; }\n"
     "static int h(void) __attribute__((ifunc(\"resolve\"), used));\n", "symbol h is an IFUNC"),
    ("ifunc-asm", "void *resolve(void) { _exit(0); return 0; }\n"
     '__asm__(".globl hh\\n.type hh, @gnu_indirect_function\\n.set hh, resolve");\n',
     "symbol hh is an IFUNC"),
    ("irelative-reloc", "void *resolve(void) { _exit(0); return 0; }\n"
     f'__asm__(".data\\n.quad 0\\n.reloc .-8, {IRELATIVE}, resolve\\n.text");\n', IRELATIVE),
]  # fmt: skip


@pytest.mark.parametrize(("attack", "reason"), [(a, r) for _, a, r in OBJECT_ATTACKS],
                         ids=[name for name, _, _ in OBJECT_ATTACKS])  # fmt: skip
def test_an_object_that_breaks_a_rule_fails_before_it_runs(
    verifier: CompileTestVerifier, attack: str, reason: str
) -> None:
    """FAIL naming the rule; only the build jail ran (the driver never started)."""
    outcome, jails = launches(verifier, HEADERS + WRONG + attack)
    assert outcome.verdict is Verdict.FAIL, outcome
    assert outcome.reason.startswith("object check: ")
    assert reason in outcome.reason
    assert jails == 1


IFUNC_ENTRY = (HEADERS + "static int impl(int a, int b) { (void)a; (void)b; return 0; }\n"
               "static void *resolve(void) { _exit(0); return (void *)impl; }\n"
               "int gcd(int a, int b) __attribute__((ifunc(\"resolve\")));\n")  # fmt: skip


def test_ifunc_entry_point_fails(verifier: CompileTestVerifier) -> None:
    """The function under test itself as an IFUNC (its resolver would run at load)."""
    outcome = judge(verifier, IFUNC_ENTRY)
    assert (outcome.verdict, outcome.reason) == (
        Verdict.FAIL, "object check: symbol gcd is an IFUNC (its resolver runs when the program loads)"
    )  # fmt: skip


# ---- attacks at run time: the driver's own process decides ------------------------------------------

FORGED = (
    'char r[512]; int n = snprintf(r, sizeof r, "prmforge-c-report v1 nonce=%032d checks=5 ran=5\\n'
    'check 0 P 0 \\ncheck 1 P 0 \\ncheck 2 P 0 \\ncheck 3 P 0 \\ncheck 4 P 0 \\nend nonce=%032d\\n", 0, 0);\n'
)
RUNTIME_ATTACKS = [
    ("define-main", "#define main not_main\n" + WRONG + "int main(void) { return 0; }\n", Verdict.FAIL,
     "check 1 of 5 (gcd(12, 18)): returned 0, expected 6"),
    ("_exit-in-call", "int gcd(int a, int b) { (void)a; (void)b; _exit(0); }\n", Verdict.FAIL,
     "check 1 of 5 (gcd(12, 18)): exited with status 0 before returning"),
    ("exit-in-call", "int gcd(int a, int b) { (void)a; (void)b; exit(0); }\n", Verdict.FAIL,
     "check 1 of 5 (gcd(12, 18)): exited with status 0 before returning"),
    ("exit-3-in-call", "int gcd(int a, int b) { (void)a; (void)b; exit(3); }\n", Verdict.FAIL,
     "check 1 of 5 (gcd(12, 18)): exited with status 3 before returning"),
    ("syscall-exit-in-asm", f'int gcd(int a, int b) {{ (void)a; (void)b; __asm__ volatile("{EXIT_ASM}"); '
     "return 0; }\n", Verdict.FAIL, "exited with status 0 before returning"),
    ("exit-only-on-a-later-check", "int gcd(int a, int b) { if (b == 0) _exit(0); "
     "while (b) { int t = a % b; a = b; b = t; } return a; }\n", Verdict.FAIL,
     "check 3 of 5 (gcd(7, 0)): exited with status 0 before returning"),
    ("abort", "int gcd(int a, int b) { (void)a; (void)b; abort(); }\n", Verdict.CRASH,
     "check 1 of 5 (gcd(12, 18)): killed by signal 6"),
    ("segfault", "int gcd(int a, int b) { (void)a; (void)b; return *(volatile int *)0; }\n", Verdict.CRASH,
     "killed by signal 11"),
    ("kill-the-driver", "int gcd(int a, int b) { (void)a; (void)b; kill(getppid(), SIGKILL); return 0; }\n",
     Verdict.CRASH, "the test driver did not finish"),
    ("kill-everything", "int gcd(int a, int b) { (void)a; (void)b; kill(-1, SIGKILL); return 0; }\n",
     Verdict.CRASH, "the test driver did not finish"),
    ("stop-the-driver", "int gcd(int a, int b) { (void)a; (void)b; kill(getppid(), SIGSTOP); return 0; }\n",
     Verdict.TIMEOUT, "the test driver did not finish"),
    ("signal-the-driver", "int gcd(int a, int b) { (void)a; (void)b; for (int s = 1; s < 32; s++) "
     "if (s != SIGKILL && s != SIGSTOP) kill(getppid(), s); return 0; }\n", Verdict.FAIL,
     "check 1 of 5 (gcd(12, 18)): returned 0, expected 6"),
    ("forged-report-on-every-fd", "int gcd(int a, int b) { (void)a; (void)b;\n" + FORGED
     + "for (int fd = 0; fd <= 10; fd++) if (fd != 3) write(fd, r, n);\n"
     "printf(\"%s\", r); fflush(stdout); fprintf(stderr, \"%s\", r); return 0; }\n", Verdict.FAIL,
     "check 1 of 5 (gcd(12, 18)): returned 0, expected 6"),
    ("forged-report-through-proc", "int gcd(int a, int b) { (void)a; (void)b;\n" + FORGED
     + 'char p[64]; const char *t[] = {"/proc/%d/fd/1", "/proc/%d/fd/2", "/proc/1/fd/1", "/dev/stdout"};\n'
     "for (int k = 0; k < 4; k++) { snprintf(p, sizeof p, t[k], (int)getppid());\n"
     "int fd = open(p, O_WRONLY); if (fd >= 0) write(fd, r, n); } return 0; }\n", Verdict.FAIL,
     "check 1 of 5 (gcd(12, 18)): returned 0, expected 6"),
    ("forged-result-message", "int gcd(int a, int b) { (void)a; (void)b;\n" + FORGED
     + "write(3, r, n); _exit(0); }\n", Verdict.FAIL, "sent a malformed result"),
    ("nonce-from-stdin", "int gcd(int a, int b) { (void)a; (void)b; char buf[64] = {0};\n"
     "ssize_t got = read(0, buf, sizeof buf); char r[256];\n"
     'int n = snprintf(r, sizeof r, "prmforge-c-report v1 nonce=%.32s checks=5 ran=5\\n", buf);\n'
     "for (int fd = 0; fd <= 10; fd++) if (fd != 3) write(fd, r, n); return (int)got; }\n", Verdict.FAIL,
     "check 1 of 5 (gcd(12, 18)): returned 0, expected 6"),
    ("fork-and-let-the-child-answer", "int gcd(int a, int b) { (void)a; (void)b; if (fork() > 0) _exit(0); "
     "return 0; }\n", Verdict.FAIL, "check 1 of 5 (gcd(12, 18)): "),
    ("daemon-outlives-the-check", "int gcd(int a, int b) { (void)a; (void)b; if (fork() == 0) { setsid(); "
     "if (fork() == 0) sleep(5); _exit(0); } return 1; }\n", Verdict.FAIL,
     "check 1 of 5 (gcd(12, 18)): returned 1, expected 6"),
    ("infinite-loop-in-one-check", "int gcd(int a, int b) { if (a == 7) for (;;) {} "
     "while (b) { int t = a % b; a = b; b = t; } return a; }\n", Verdict.TIMEOUT,
     "the test driver did not finish: wall-clock limit"),
    ("stderr-flood",
     "int gcd(int a, int b) { (void)a; for (;;) fputs(\"xxxxxxxxxxxxxxxx\", stderr); return b; }\n",
     Verdict.OUTPUT_LIMIT, "stderr over"),
]  # fmt: skip


@pytest.mark.parametrize(("attack", "verdict", "reason"), [(a, v, r) for _, a, v, r in RUNTIME_ATTACKS],
                         ids=[name for name, _, _, _ in RUNTIME_ATTACKS])  # fmt: skip
def test_a_runtime_attack_gets_its_exact_verdict(
    verifier: CompileTestVerifier, attack: str, verdict: Verdict, reason: str
) -> None:
    """The exact non-PASS verdict, and a correct program judged next still PASSes."""
    outcome = judge(verifier, HEADERS + attack)
    assert outcome.verdict is verdict, outcome
    assert reason in outcome.reason
    assert judge(verifier, RIGHT).verdict is Verdict.PASS


PROBE = r"""
#include <dirent.h>
#include <sys/stat.h>
static int leaked(void) {
    char buf[256], path[64];
    if (read(0, buf, sizeof buf) > 0) return 1;                        /* the nonce on stdin */
    struct stat st;
    if (fstat(0, &st) != 0 || !S_ISCHR(st.st_mode) || fstat(1, &st) != 0 || !S_ISCHR(st.st_mode)) return 2;
    for (int fd = 4; fd < 256; fd++) if (fcntl(fd, F_GETFD) != -1) return 3; /* only 0..3 open */
    const char *names[] = {"driver", "/proc/%d/exe", "/proc/%d/mem", "/proc/%d/maps", "/proc/%d/environ",
                           "/proc/%d/fd/0", "/proc/%d/fd/1", "/proc/%d/root/box/driver",
                           "/proc/%d/cwd/driver",
                           "/proc/%d/map_files"};
    for (unsigned k = 0; k < sizeof names / sizeof *names; k++) {
        snprintf(path, sizeof path, names[k], (int)getppid());
        int fd = open(path, O_RDONLY);
        if (fd >= 0 && read(fd, buf, sizeof buf) > 0) return 10 + (int)k;
        DIR *d = opendir(path);
        if (d != NULL && readdir(d) != NULL) return 30 + (int)k;
    }
    DIR *box = opendir(".");
    struct dirent *e;
    while (box != NULL && (e = readdir(box)) != NULL)
        if (strcmp(e->d_name, "driver") == 0) return 50;                 /* the oracle's binary */
    return 0;
}
int gcd(int a, int b) {
    if (leaked()) return -1;
    while (b) { int t = a % b; a = b; b = t; }
    return a;
}
"""


def test_nothing_reaches_the_nonce_or_the_oracle(verifier: CompileTestVerifier) -> None:
    """A correct gcd that breaks itself if stdin, a descriptor beyond its result pipe, the driver's
    binary or its /proc files (memory, descriptors, environment) give it anything still PASSes."""
    outcome = judge(verifier, HEADERS + PROBE)
    assert (outcome.verdict, outcome.reason) == (Verdict.PASS, "")


def test_with_the_object_rules_switched_off_the_driver_still_decides(
    verifier: CompileTestVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: a constructor, an IFUNC resolver and an interposed write run in the runner
    only, where all they can do is end it or send a value: FAIL."""
    monkeypatch.setattr(c_harness, "object_violation", lambda *_: None)
    monkeypatch.setattr(c_harness, "localized_violation", lambda *_: None)
    constructor = judge(verifier, HEADERS + WRONG + OBJECT_ATTACKS[0][1])
    assert (constructor.verdict, constructor.reason) == (
        Verdict.FAIL, "check 1 of 5 (gcd(12, 18)): exited with status 0 before returning"
    )  # fmt: skip
    ifunc = judge(verifier, IFUNC_ENTRY)
    assert (ifunc.verdict, ifunc.reason) == (
        Verdict.FAIL, "check 1 of 5 (gcd(12, 18)): exited with status 0 before returning"
    )  # fmt: skip
    write = next(a for n, a, _ in OBJECT_ATTACKS if n == "interpose-write")
    assert judge(verifier, HEADERS + WRONG + write).verdict is Verdict.FAIL


def test_correct_programs_with_harmless_extras_pass(verifier: CompileTestVerifier) -> None:
    """Global helpers, printing, a renamed main and a process left behind are not attacks: a correct gcd
    with them PASSes (and the next program too)."""
    helper = "int step_mod(int a, int b) { return a % b; }\n" + RIGHT.replace("a % b", "step_mod(a, b)")
    assert judge(verifier, helper).verdict is Verdict.PASS
    chatty = '#include <stdio.h>\nint gcd(int a, int b) { printf("gcd %d %d\\n", a, b); ' + RIGHT[24:]
    assert judge(verifier, chatty).verdict is Verdict.PASS
    renamed = "#define main not_main\n" + RIGHT + "int main(void) { return 1; }\n"
    assert judge(verifier, renamed).verdict is Verdict.PASS
    daemon = HEADERS + RIGHT.replace(
        "{ while", "{ if (a == 12 && fork() == 0) { setsid(); sleep(30); _exit(0); } while"
    )
    assert judge(verifier, daemon).verdict is Verdict.PASS
    assert judge(verifier, RIGHT).verdict is Verdict.PASS


def test_a_different_signature_is_a_compile_error(verifier: CompileTestVerifier) -> None:
    """The prototype is part of the sample's translation unit: ``long gcd(long, long)`` conflicts."""
    body = "long gcd(long a, long b) { while (b) { long t = a % b; a = b; b = t; } return a; }\n"
    outcome = judge(verifier, body)
    assert outcome.verdict is Verdict.COMPILE_ERROR
    assert "conflicting types for" in outcome.reason


@pytest.mark.parametrize("task", C_TASKS, ids=[t.name for t in C_TASKS])
def test_every_builtin_c_task_passes_its_reference_and_fails_its_bugs(
    verifier: CompileTestVerifier, task: Any
) -> None:
    """The reference PASSes; each bug site's program as written FAILs a check."""
    spec = code_spec_of(PROBLEMS[task.name])
    assert verifier.run_c(spec, f"{spec.prelude}\n" + "\n".join(task.reference)).verdict is Verdict.PASS
    for bug in task.bugs:
        outcome = verifier.run_c(spec, f"{spec.prelude}\n" + "\n".join(apply_bug(task.reference, bug)))
        assert outcome.verdict is Verdict.FAIL, bug
        assert outcome.reason.startswith("check "), outcome.reason


# ---- what crosses back to the host is data -----------------------------------------------------------

NONCE = "0123456789abcdef0123456789abcdef"
GOOD = f"prmforge-c-report v1 nonce={NONCE} checks=2 ran=2\ncheck 0 P 0 \ncheck 1 P 0 \nend nonce={NONCE}\n"


@pytest.mark.parametrize(
    "stdout",
    [b"", GOOD.replace(NONCE, "f" * 32).encode(), GOOD.encode()[:-1], GOOD.replace("ran=2", "ran=1").encode(),
     GOOD.replace("checks=2", "checks=1").encode(), (GOOD + GOOD).encode(), ("noise\n" + GOOD).encode(),
     GOOD.replace("check 0 P", "check 0 W").encode(),
     GOOD.replace("check 1 P 0 ", "check 1 P 0 \xe9").encode("latin-1"),
     GOOD.replace("check 1", "check 0").encode(),
     GOOD.replace(" 0 \ncheck 1", " 99999999999 \ncheck 1").encode(),
     b"\xff" * 64, GOOD.replace("P", "Q").encode()],
)  # fmt: skip
def test_a_malformed_report_is_a_reason_not_an_exception(stdout: bytes) -> None:
    """Anything but exactly the report for this run is refused with a reason (FAIL upstream)."""
    assert isinstance(parse_report(stdout, NONCE, 2), str)


def test_the_report_of_this_run_is_read() -> None:
    report = parse_report(GOOD.encode(), NONCE, 2)
    assert not isinstance(report, str)
    assert report.passed


def test_the_object_reader_refuses_garbage_without_raising() -> None:
    """Truncated, mutated and random bytes: a reason, never an exception."""
    import random

    rng = random.Random(7)
    blobs = [b"", b"\x7fELF", b"\x7fELF\x02\x01" + bytes(58), bytes(rng.randrange(256) for _ in range(4096))]
    header = b"\x7fELF\x02\x01\x01" + bytes(9) + (1).to_bytes(2, "little") + (62).to_bytes(2, "little")
    base = bytearray(header)
    base += bytes(64 - len(base))
    blobs += [bytes(base[:k]) for k in range(0, 64, 7)]
    for _ in range(200):
        blob = bytearray(base + bytes(rng.randrange(256) for _ in range(512)))
        blob[40:48] = rng.randrange(0, 600).to_bytes(8, "little")
        blob[58:64] = (64).to_bytes(2, "little") + rng.randrange(0, 12).to_bytes(2, "little") + bytes(2)
        blobs.append(bytes(blob))
    for blob in blobs:
        assert isinstance(object_violation(blob, "gcd", frozenset()), str)
