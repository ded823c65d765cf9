"""The built-in code tasks: reference solutions written as lines, unit tests and hand-picked bug sites.

Data only; :mod:`prmforge.suites.code` turns these tasks into problems and rollouts.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from prmforge.languages.code_program import LANGUAGES, CBuffer, CCheck, CTests, Language, c_tests_text

__all__ = ["BUG_KINDS", "BY_NAME", "LANGUAGES", "TASKS", "Bug", "BugKind", "CodeTask", "Language"]

BugKind = Literal["operator_swap", "off_by_one", "wrong_variable", "wrong_constant", "deleted_line"]
BUG_KINDS: Final[tuple[BugKind, ...]] = (
    "operator_swap", "off_by_one", "wrong_variable", "wrong_constant", "deleted_line",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Bug:
    """Replace the first ``old`` in reference line ``line`` by ``new`` (``deleted_line``: drop the line)."""

    line: int
    kind: BugKind
    old: str = ""
    new: str = ""


@dataclass(frozen=True, slots=True)
class CodeTask:
    name: str
    language: Language
    entry_point: str
    description: str
    reference: tuple[str, ...]
    tests: str
    bugs: tuple[Bug, ...]
    prelude: str = ""


def _lines(source: str) -> tuple[str, ...]:
    return tuple(line for line in textwrap.dedent(source).splitlines() if line.strip())


def _task(
    name: str, language: Language, description: str, source: str, tests: str | tuple[CCheck, ...], *bugs: Bug
) -> CodeTask:
    reference = _lines(source)
    entry = reference[0].split("(")[0].split()[-1].lstrip("*")
    prelude = "#include <string.h>\n#include <stdlib.h>" if language == "c" else ""
    if isinstance(tests, tuple):  # C: structured checks; the prototype is the reference's signature
        text = c_tests_text(CTests(reference[0].split("{")[0].strip() + ";", tests))
    else:
        text = textwrap.dedent(tests).strip() + "\n"
    return CodeTask(name, language, entry, description, reference, text, tuple(bugs), prelude)


def _ints(function: str, *pairs: tuple[str, str]) -> tuple[CCheck, ...]:
    """One int-returning check per ``(arguments, expected)`` pair."""
    return tuple(CCheck(f"{function}({args})", returns="int", expect=expect) for args, expect in pairs)


def _reversed(text: str) -> CCheck:
    """``reverse(buf)`` on a 16-byte buffer holding ``text``; compared as a string."""
    return CCheck(
        "reverse(buf)", buffers=(CBuffer("buf", "char", 16, f'"{text}"', f'"{text[::-1]}"', "string"),)
    )


def _maxima(xs: str, n: int, maxima: str) -> CCheck:
    """``running_max`` of ``xs`` (n elements) into an n-element ``out``, compared element by element."""
    return CCheck(
        f"running_max((int[]){{{xs}}}, {n}, out)", buffers=(CBuffer("out", "int", n, expect=f"{{{maxima}}}"),)
    )


_OPS, _OFF, _VAR, _CONST, _DEL = BUG_KINDS

TASKS: Final[tuple[CodeTask, ...]] = (
    _task("sum_digits", "python", "Return the sum of the decimal digits of the integer n (sign ignored).", """
        def sum_digits(n):
            n = abs(n)
            total = 0
            while n > 0:
                total += n % 10
                n //= 10
            return total
        """, """
        assert sum_digits(0) == 0
        assert sum_digits(123) == 6
        assert sum_digits(-45) == 9
        assert sum_digits(1000) == 1
        assert sum_digits(9999) == 36
        """, Bug(4, _OPS, "+=", "-="), Bug(3, _OFF, "n > 0", "n > 1"), Bug(2, _CONST, "0", "1"),
        Bug(5, _CONST, "10", "100"), Bug(1, _DEL)),
    _task("gcd", "python", "Return the greatest common divisor of the integers a and b (non-negative).", """
        def gcd(a, b):
            while b != 0:
                a, b = b, a % b
            return abs(a)
        """, """
        assert gcd(12, 18) == 6
        assert gcd(18, 12) == 6
        assert gcd(7, 0) == 7
        assert gcd(0, 5) == 5
        assert gcd(-4, 6) == 2
        assert gcd(17, 5) == 1
        """, Bug(1, _OPS, "!=", "=="), Bug(2, _VAR, "a % b", "b % a"), Bug(2, _OPS, "%", "//"),
        Bug(1, _CONST, "0", "1")),
    _task("is_prime", "python", "Return True when the integer n is prime.", """
        def is_prime(n):
            if n < 2:
                return False
            i = 2
            while i * i <= n:
                if n % i == 0:
                    return False
                i += 1
            return True
        """, """
        assert [k for k in range(30) if is_prime(k)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
        assert is_prime(97) and not is_prime(91) and not is_prime(-7)
        """, Bug(1, _OFF, "n < 2", "n < 1"), Bug(4, _OPS, "<=", "<"), Bug(3, _CONST, "2", "1"),
        Bug(5, _VAR, "n % i", "i % n"), Bug(6, _CONST, "False", "True")),
    _task("reverse_words", "python", "Return the words of s in reverse order, joined by one space.", """
        def reverse_words(s):
            words = s.split()
            words.reverse()
            return " ".join(words)
        """, """
        assert reverse_words("a b c") == "c b a"
        assert reverse_words("  hello   world ") == "world hello"
        assert reverse_words("") == ""
        """, Bug(2, _DEL), Bug(3, _CONST, '" "', '""'), Bug(1, _CONST, "s.split()", 's.split(" ")'),
        Bug(3, _VAR, "(words)", "(s)")),
    _task("running_max", "python", "Return the list of running maxima of the list xs.", """
        def running_max(xs):
            result = []
            best = None
            for x in xs:
                if best is None or x > best:
                    best = x
                result.append(best)
            return result
        """, """
        assert running_max([]) == []
        assert running_max([3, 1, 4, 1, 5]) == [3, 3, 4, 4, 5]
        assert running_max([-2, -5, -1]) == [-2, -2, -1]
        """, Bug(4, _OPS, "x > best", "x < best"), Bug(6, _VAR, "(best)", "(x)"), Bug(5, _DEL),
        Bug(5, _VAR, "= x", "= xs[0]")),
    _task("binary_search", "python", "Return an index of target in the sorted list xs, or -1.", """
        def binary_search(xs, target):
            lo = 0
            hi = len(xs) - 1
            while lo <= hi:
                mid = (lo + hi) // 2
                if xs[mid] == target:
                    return mid
                if xs[mid] < target:
                    lo = mid + 1
                else:
                    hi = mid - 1
            return -1
        """, """
        xs = [1, 3, 5, 7, 9, 11]
        assert [binary_search(xs, v) for v in xs] == [0, 1, 2, 3, 4, 5]
        assert binary_search(xs, 4) == -1 and binary_search(xs, 12) == -1 and binary_search([], 1) == -1
        assert binary_search([2], 2) == 0
        """, Bug(2, _OFF, "- 1", "- 2"), Bug(3, _OPS, "<=", "<"), Bug(7, _OPS, "<", ">"),
        Bug(11, _CONST, "-1", "0")),
    _task("compress", "python", "Run-length encode s: 'aaabcc' becomes 'a3b1c2'.", """
        def compress(s):
            if not s:
                return ""
            out = []
            count = 1
            for i in range(1, len(s)):
                if s[i] == s[i - 1]:
                    count += 1
                else:
                    out.append(s[i - 1] + str(count))
                    count = 1
            out.append(s[-1] + str(count))
            return "".join(out)
        """, """
        assert compress("") == ""
        assert compress("a") == "a1"
        assert compress("aaabcc") == "a3b1c2"
        assert compress("abba") == "a1b2a1"
        """, Bug(4, _CONST, "1", "0"), Bug(5, _OFF, "len(s)", "len(s) - 1"), Bug(10, _DEL),
        Bug(6, _VAR, "s[i - 1]", "s[0]"), Bug(6, _OPS, "==", "!=")),
    _task("fizzbuzz", "python", "Return the FizzBuzz strings for 1..n.", """
        def fizzbuzz(n):
            out = []
            for i in range(1, n + 1):
                if i % 15 == 0:
                    out.append("FizzBuzz")
                elif i % 3 == 0:
                    out.append("Fizz")
                elif i % 5 == 0:
                    out.append("Buzz")
                else:
                    out.append(str(i))
            return out
        """, """
        assert fizzbuzz(0) == []
        assert fizzbuzz(5) == ["1", "2", "Fizz", "4", "Buzz"]
        assert fizzbuzz(15)[-1] == "FizzBuzz" and len(fizzbuzz(16)) == 16
        """, Bug(2, _OFF, "n + 1", "n"), Bug(3, _CONST, "15", "10"), Bug(7, _CONST, "5", "3"),
        Bug(10, _VAR, "str(i)", "str(n)")),
    _task("sum_digits_c", "c", "Return the sum of the decimal digits of n (sign ignored).", """
        int sum_digits(int n) {
            if (n < 0) n = -n;
            int total = 0;
            while (n > 0) {
                total += n % 10;
                n /= 10;
            }
            return total;
        }
        """, _ints("sum_digits", ("0", "0"), ("123", "6"), ("-45", "9"), ("1000", "1")),
        Bug(4, _OPS, "+=", "-="), Bug(2, _CONST, "0", "1"), Bug(3, _OFF, "n > 0", "n > 1"),
        Bug(1, _OPS, "n < 0", "n > 0"), Bug(4, _CONST, "10", "8")),
    _task("gcd_c", "c", "Return the greatest common divisor of the non-negative integers a and b.", """
        int gcd(int a, int b) {
            while (b != 0) {
                int t = a % b;
                a = b;
                b = t;
            }
            return a;
        }
        """, _ints("gcd", ("12, 18", "6"), ("18, 12", "6"), ("7, 0", "7"), ("0, 5", "5"), ("17, 5", "1")),
        Bug(2, _VAR, "a % b", "b % a"), Bug(3, _VAR, "a = b", "a = t"), Bug(3, _DEL),
        Bug(6, _VAR, "return a", "return b")),
    _task("is_prime_c", "c", "Return 1 when n is prime, else 0.", """
        int is_prime(int n) {
            if (n < 2) return 0;
            for (int i = 2; i * i <= n; i++) {
                if (n % i == 0) return 0;
            }
            return 1;
        }
        """, _ints("is_prime", ("0", "0"), ("1", "0"), ("2", "1"), ("3", "1"), ("4", "0"), ("5", "1"),
                   ("9", "0"), ("25", "0"), ("97", "1"), ("91", "0")),
        Bug(1, _OFF, "n < 2", "n < 3"), Bug(2, _OPS, "<=", "<"), Bug(2, _CONST, "i = 2", "i = 1"),
        Bug(3, _CONST, "== 0", "== 1")),
    _task("binary_search_c", "c", "Return an index of target in the sorted array xs of length n, or -1.", """
        int binary_search(const int *xs, int n, int target) {
            int lo = 0;
            int hi = n - 1;
            while (lo <= hi) {
                int mid = lo + (hi - lo) / 2;
                if (xs[mid] == target) return mid;
                if (xs[mid] < target) lo = mid + 1;
                else hi = mid - 1;
            }
            return -1;
        }
        """, _ints("binary_search", ("(int[]){1, 3, 5, 7, 9}, 5, 1", "0"),
                   ("(int[]){1, 3, 5, 7, 9}, 5, 9", "4"), ("(int[]){1, 3, 5, 7, 9}, 5, 4", "-1"),
                   ("(int[]){2}, 1, 2", "0")),
        Bug(2, _OFF, "n - 1", "n - 2"), Bug(3, _OPS, "<=", "<"), Bug(6, _OPS, "<", ">"),
        Bug(9, _CONST, "-1", "0")),
    _task("reverse_c", "c", "Reverse the NUL-terminated string s in place.", """
        void reverse(char *s) {
            int i = 0;
            int j = (int)strlen(s) - 1;
            while (i < j) {
                char tmp = s[i];
                s[i] = s[j];
                s[j] = tmp;
                i++;
                j--;
            }
        }
        """, tuple(_reversed(s) for s in ("abcd", "abc", "x", "")),
        Bug(2, _OFF, "- 1", "- 0"), Bug(6, _VAR, "= tmp", "= s[i]"), Bug(8, _DEL),
        Bug(3, _OPS, "i < j", "i > j")),
    _task("running_max_c", "c", "Write the running maxima of xs[0..n) (n >= 1) into out.", """
        void running_max(const int *xs, int n, int *out) {
            int best = xs[0];
            for (int i = 0; i < n; i++) {
                if (xs[i] > best) best = xs[i];
                out[i] = best;
            }
        }
        """, (_maxima("3, 1, 4, 1, 5", 5, "3, 3, 4, 4, 5"), _maxima("-2, -5, -1", 3, "-2, -2, -1"),
              _maxima("7", 1, "7")),
        Bug(2, _OFF, "i = 0", "i = 1"), Bug(3, _OPS, "xs[i] > best", "xs[i] < best"),
        Bug(4, _VAR, "= best", "= xs[i]"), Bug(1, _CONST, "xs[0]", "0")),
    _task("count_words_c", "c", "Return the number of space-separated words in s.", """
        int count_words(const char *s) {
            int count = 0;
            int in_word = 0;
            for (int i = 0; s[i] != '\\0'; i++) {
                if (s[i] == ' ') {
                    in_word = 0;
                } else if (!in_word) {
                    in_word = 1;
                    count++;
                }
            }
            return count;
        }
        """, _ints("count_words", ('""', "0"), ('"one"', "1"), ('"  two words "', "2"), ('"a b  c"', "3")),
        Bug(1, _CONST, "0", "1"), Bug(5, _CONST, "0", "1"), Bug(7, _DEL), Bug(4, _OPS, "==", "!=")),
    _task("fib_c", "c", "Return the n-th Fibonacci number (fib(0) = 0, fib(1) = 1).", """
        int fib(int n) {
            int a = 0;
            int b = 1;
            for (int i = 0; i < n; i++) {
                int t = a + b;
                a = b;
                b = t;
            }
            return a;
        }
        """, _ints("fib", ("0", "0"), ("1", "1"), ("2", "1"), ("10", "55"), ("20", "6765")),
        Bug(3, _OFF, "i < n", "i <= n"), Bug(4, _OPS, "a + b", "a - b"), Bug(5, _VAR, "a = b", "a = t"),
        Bug(2, _CONST, "1", "2")),
)  # fmt: skip
BY_NAME: Final[Mapping[str, CodeTask]] = {task.name: task for task in TASKS}
