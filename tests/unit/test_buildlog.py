"""The verifier's refusal in one line, whichever loader reported it."""

from ksnoop.trace.buildlog import verifier_reason

# our own loader (links.py) keeps the kernel's log
KERNEL_LOG = """0: (bf) r6 = r1
; ...
BPF program is too large. Processed 1000001 insn
processed 1000001 insns (limit 1000000) max_states_per_insn 4 total_states 9000 peak_states 900
"""
# BCC asks for no log on E2BIG and blames the size
BCC_LOG = "bpf: Argument list too long. Program  too large (223 insns), at most 4096 insns\n"


def test_gave_up_in_the_kernels_log():
    why = verifier_reason(KERNEL_LOG)
    assert why.startswith("too complex for the verifier") and "shorten it" in why


def test_gave_up_as_bcc_reports_it():
    why = verifier_reason(BCC_LOG)
    assert why.startswith("too complex for the verifier") and "(223 instructions long)" in why


def test_really_too_large_stays_as_said():
    log = "bpf: Argument list too long. Program  too large (5000 insns), at most 4096 insns\n"
    assert verifier_reason(log) == log.strip()


def test_other_refusals_give_the_last_line_before_the_statistics():
    log = "0: (85) call bpf_probe_read_kernel#113\nR1 type=ctx expected=fp\nprocessed 3 insns\n"
    assert verifier_reason(log) == "R1 type=ctx expected=fp"
