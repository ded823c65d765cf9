"""Rules for the object file of a C sample's translation unit, checked on the host from its bytes.

The sample is compiled alone (``gcc -c``) into ``sample.o``; before anything
it contains may run, :func:`object_violation` reads the ELF file (a small
bounds-checked reader, no binutils on the host) and names the first rule it
breaks:

- **sections**: only the kinds gcc emits for C code (``.text*``, ``.data*``,
  ``.rodata*``, ``.bss*``, ``.tdata*``, ``.tbss*``, ``.eh_frame``, ``.comment``,
  the GNU notes, symbol and string tables, groups and their relocations). That
  leaves out every way to run code before or after the called function:
  ``.init_array``, ``.fini_array``, ``.preinit_array``, ``.ctors``, ``.dtors``
  (constructor attributes, section attributes and hand-written asm alike),
  ``.init``/``.fini`` code spliced into ``_init``/``_fini``, and anything the
  linker would merge into dynamic-linking tables (``.interp``, ``.got``, ...);
- **section types**: no ``SHT_INIT_ARRAY``/``FINI_ARRAY``/``PREINIT_ARRAY``,
  ``SHT_DYNAMIC`` or other types outside the list;
- **symbols**: no ``STT_GNU_IFUNC`` (a resolver runs at load time), no common
  symbols (they merge with a library's definition), no ``STB_GNU_UNIQUE``; the
  entry point is a defined global function; no global definition of ``main``,
  ``_start``, ``_init``, ``_fini``, of a reserved identifier (``__x``, ``_X``) or
  of a name the C library defines;
- **relocations**: none of the dynamic-only kinds (``IRELATIVE``, ``COPY``,
  ``GLOB_DAT``, ``JUMP_SLOT``, ``RELATIVE``), which would make the loader run or
  patch something.

After ``objcopy --keep-global-symbol=ENTRY``, :func:`localized_violation`
checks that the entry point is the only global definition left, so nothing
the sample defines can interpose on the runner's stub or on the C library.
"""

from __future__ import annotations

import functools
import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["ElfObject", "ElfSymbol", "libc_names", "localized_violation", "object_violation", "read_elf"]

_SHN_UNDEF, _SHN_ABS, _SHN_COMMON, _SHN_XINDEX = 0, 0xFFF1, 0xFFF2, 0xFFFF
_STB_LOCAL, _STB_GNU_UNIQUE = 0, 10
_STT_FUNC, _STT_GNU_IFUNC = 2, 10
_SHT_SYMTAB, _SHT_STRTAB, _SHT_RELA, _SHT_REL, _SHT_DYNSYM, _SHT_GNU_VERSYM = 2, 3, 4, 9, 11, 0x6FFFFFFF
_SHT_NAMES: Final = {14: "SHT_INIT_ARRAY", 15: "SHT_FINI_ARRAY", 16: "SHT_PREINIT_ARRAY", 6: "SHT_DYNAMIC"}
_ALLOWED_TYPES: Final = frozenset({0, 1, 2, 3, 4, 7, 8, 9, 17, 18, 0x70000001})
"""NULL PROGBITS SYMTAB STRTAB RELA NOTE NOBITS REL GROUP SYMTAB_SHNDX X86_64_UNWIND."""
_EXACT: Final = frozenset(
    {".comment", ".note.GNU-stack", ".note.gnu.property", ".eh_frame", ".symtab", ".strtab", ".shstrtab",
     ".group", ".symtab_shndx"}
)  # fmt: skip
_PREFIXES: Final = (".text", ".data", ".rodata", ".bss", ".tdata", ".tbss")
_HOOKS: Final = re.compile(r"\.(init_array|fini_array|preinit_array|ctors|dtors|init|fini)(\..*)?")
_EM_X86_64, _EM_AARCH64 = 62, 183
_DYNAMIC_RELOCS: Final = {
    _EM_X86_64: {5: "R_X86_64_COPY", 6: "R_X86_64_GLOB_DAT", 7: "R_X86_64_JUMP_SLOT",
                 8: "R_X86_64_RELATIVE", 37: "R_X86_64_IRELATIVE"},
    _EM_AARCH64: {1024: "R_AARCH64_COPY", 1025: "R_AARCH64_GLOB_DAT", 1026: "R_AARCH64_JUMP_SLOT",
                  1027: "R_AARCH64_RELATIVE", 1032: "R_AARCH64_IRELATIVE"},
}  # fmt: skip
_ENTRY_NAMES: Final = frozenset({"main", "_start", "_init", "_fini"})
_RESERVED = re.compile(r"__|_[A-Z]")


class ElfError(ValueError):
    """The bytes are not a well-formed 64-bit little-endian ELF file."""


@dataclass(frozen=True, slots=True)
class ElfSymbol:
    name: str
    bind: int
    type: int
    shndx: int

    @property
    def defined(self) -> bool:
        return self.shndx != _SHN_UNDEF

    @property
    def is_global(self) -> bool:
        return self.bind != _STB_LOCAL


@dataclass(frozen=True, slots=True)
class ElfSection:
    name: str
    type: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int


@dataclass(frozen=True, slots=True)
class ElfObject:
    kind: int
    machine: int
    sections: tuple[ElfSection, ...]
    symbols: tuple[ElfSymbol, ...]
    relocation_types: frozenset[int]


def _unpack(fmt: str, data: bytes, offset: int) -> tuple[int, ...]:
    if offset < 0 or offset + struct.calcsize(fmt) > len(data):
        raise ElfError(f"truncated at offset {offset}")
    return struct.unpack_from(fmt, data, offset)


def _string(data: bytes, table: ElfSection, index: int) -> str:
    if table.type != _SHT_STRTAB or not 0 <= index < table.size or table.offset + table.size > len(data):
        raise ElfError("bad string table reference")
    start = table.offset + index
    end = data.find(b"\0", start, table.offset + table.size)
    if end < 0:
        raise ElfError("unterminated string")
    return data[start:end].decode("utf-8", "replace")


def read_elf(data: bytes, symbol_table: int = _SHT_SYMTAB) -> ElfObject:
    """Sections, the symbols of the ``symbol_table`` sections and the relocation types of ``data``."""
    if data[:4] != b"\x7fELF" or data[4:6] != b"\x02\x01":
        raise ElfError("not a 64-bit little-endian ELF file")
    kind, machine = _unpack("<HH", data, 16)
    shoff, = _unpack("<Q", data, 40)  # fmt: skip
    shentsize, shnum, shstrndx = _unpack("<HHH", data, 58)
    if shentsize != 64:
        raise ElfError(f"section header size {shentsize}")
    if shnum == 0 and shoff:
        shnum = _unpack("<Q", data, shoff + 32)[0]
    if shstrndx == _SHN_XINDEX:
        shstrndx = _unpack("<I", data, shoff + 40)[0]
    if shnum > 65536 or shoff + shnum * 64 > len(data):
        raise ElfError("section headers outside the file")
    raw = [_unpack("<IIQQQQIIQQ", data, shoff + 64 * i) for i in range(shnum)]
    if not 0 <= shstrndx < shnum:
        raise ElfError("bad section name table index")
    names_table = ElfSection("", raw[shstrndx][1], raw[shstrndx][4], raw[shstrndx][5], 0, 0, 0)
    sections = tuple(
        ElfSection(_string(data, names_table, r[0]), r[1], r[4], r[5], r[6], r[7], r[9]) if i else
        ElfSection("", r[1], r[4], r[5], r[6], r[7], r[9])
        for i, r in enumerate(raw)
    )  # fmt: skip
    for section in sections:
        if section.type != 8 and section.offset + section.size > len(data):
            raise ElfError(f"section {section.name} outside the file")
    symbols: list[ElfSymbol] = []
    relocs: set[int] = set()
    for section in sections:
        if section.type == symbol_table:
            if section.entsize != 24 or not 0 < section.link < len(sections):
                raise ElfError(f"bad symbol table {section.name}")
            strings = sections[section.link]
            for offset in range(section.offset, section.offset + section.size - 23, 24):
                name, info, _, shndx = _unpack("<IBBH", data, offset)
                symbols.append(ElfSymbol(_string(data, strings, name), info >> 4, info & 15, shndx))
        elif section.type in (_SHT_RELA, _SHT_REL):
            size = 24 if section.type == _SHT_RELA else 16
            for offset in range(section.offset, section.offset + section.size - size + 1, size):
                relocs.add(_unpack("<Q", data, offset + 8)[0] & 0xFFFFFFFF)
    return ElfObject(kind, machine, sections, tuple(symbols), frozenset(relocs))


def _section_violation(section: ElfSection) -> str | None:
    name = section.name
    base = re.sub(r"^\.rela?(?=\.)", "", name) if section.type in (_SHT_RELA, _SHT_REL) else name
    hook = _HOOKS.fullmatch(base)
    if hook is not None:
        return f"section {name} runs code outside the tested call (constructors, destructors, init/fini)"
    if section.type in _SHT_NAMES or section.type not in _ALLOWED_TYPES:
        kind = _SHT_NAMES.get(section.type, f"type {section.type:#x}")
        return f"section {name} has {kind}, which gcc does not emit for C code"
    if base in _EXACT or any(base == p or base.startswith(p + ".") for p in _PREFIXES):
        return None
    return f"section {name!r} is not one gcc emits for C code (custom sections are not allowed)"


def object_violation(data: bytes, entry: str, reserved: frozenset[str]) -> str | None:
    """The first rule ``data`` (the sample's ``gcc -c`` output) breaks, or None (see the module doc).

    ``reserved`` holds the names the C library defines (:func:`libc_names`).
    """
    try:
        elf = read_elf(data)
    except ElfError as err:
        return f"the object file is malformed: {err}"
    if elf.kind != 1:
        return f"not a relocatable object (ELF type {elf.kind})"
    if elf.machine not in _DYNAMIC_RELOCS:
        return f"object checks do not support ELF machine {elf.machine}"
    for section in elf.sections[1:]:
        problem = _section_violation(section)
        if problem is not None:
            return problem
    if sum(s.type == _SHT_SYMTAB for s in elf.sections) != 1:
        return "the object file needs exactly one symbol table"
    dynamic = _DYNAMIC_RELOCS[elf.machine]
    for kind in sorted(elf.relocation_types & dynamic.keys()):
        return f"relocation {dynamic[kind]} is dynamic-only (the loader would run or patch code)"
    for symbol in elf.symbols:
        if symbol.type == _STT_GNU_IFUNC:
            return f"symbol {symbol.name} is an IFUNC (its resolver runs when the program loads)"
        if symbol.shndx == _SHN_COMMON:
            return f"symbol {symbol.name} is a common symbol (it would merge with another definition)"
        if symbol.bind == _STB_GNU_UNIQUE:
            return f"symbol {symbol.name} is GNU_UNIQUE"
        name = symbol.name.split("@")[0]  # a .symver'd definition (name@VERSION) counts as name
        if not symbol.defined or not symbol.is_global or symbol.name == entry:
            continue
        if name in _ENTRY_NAMES:
            return f"defines {symbol.name}, which only the test harness may define"
        if _RESERVED.match(name) or name in reserved or name != symbol.name:
            return f"defines {symbol.name}, a name reserved for the C implementation or library"
    entries = [s for s in elf.symbols if s.name == entry and s.defined and s.is_global]
    if len(entries) != 1 or entries[0].type != _STT_FUNC or entries[0].shndx in (_SHN_ABS, _SHN_XINDEX):
        return f"the entry point {entry} is not defined as a global function"
    return None


def localized_violation(data: bytes, entry: str) -> str | None:
    """After ``objcopy --keep-global-symbol``: the entry point must be the only global definition."""
    try:
        elf = read_elf(data)
    except ElfError as err:
        return f"the localized object file is malformed: {err}"
    extra = sorted({s.name for s in elf.symbols if s.defined and s.is_global and s.name != entry})
    return f"global definitions left after localizing: {', '.join(extra)}" if extra else None


@functools.cache
def libc_names(gcc: str = "gcc") -> frozenset[str]:
    """Names a program can link against in the C library (``libc.so.6`` as ``gcc`` finds it): its
    dynamic symbols, less the compatibility-only versions."""
    try:
        done = subprocess.run(
            [gcc, "-print-file-name=libc.so.6"], capture_output=True, timeout=10, check=True, text=True
        )
        path = Path(done.stdout.strip()).resolve(strict=True)
        data = path.read_bytes()
        elf = read_elf(data, _SHT_DYNSYM)
        versym = next((s for s in elf.sections if s.type == _SHT_GNU_VERSYM), None)
        hidden = [False] * len(elf.symbols)
        if versym is not None and versym.size == 2 * len(elf.symbols):
            hidden = [bool(v & 0x8000) for v in struct.unpack_from(f"<{len(hidden)}H", data, versym.offset)]
    except (OSError, subprocess.SubprocessError, ElfError, struct.error) as err:
        raise RuntimeError(f"cannot read the C library's symbols: {err}") from err
    # Compatibility-only symbols (hidden versions such as step@GLIBC_2.2.5) cannot be linked against.
    names = frozenset(
        s.name for s, old in zip(elf.symbols, hidden, strict=True) if s.defined and s.name and not old
    )
    if len(names) < 100:
        raise RuntimeError(f"the C library at {path} defines only {len(names)} names")
    return names
