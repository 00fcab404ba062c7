"""`attn run` never loses data (issue 9, items 4-8): an output that is an
input is refused, whatever the spelling; only files this run created are ever
removed; outputs appear all at once, by rename, when every one was written;
two outputs to one file are refused; .npz archives with duplicate member
names are refused; long paths are never truncated."""
import os
import resource
import stat
import subprocess

import numpy as np
import pytest

from npyfiles import header, make_zip, npy_bytes, raw_npy

X = np.arange(12, dtype=np.float32).reshape(3, 4) / 7.0


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sdpa_inputs(tmp_path):
    rng = np.random.default_rng(3)
    for n in "qkv":
        np.save(tmp_path / (n + ".npy"), rng.standard_normal((2, 3, 4)).astype(np.float32))
    return ["--q", tmp_path / "q.npy", "--k", tmp_path / "k.npy", "--v", tmp_path / "v.npy"]


# ---- 4: an output that is an input ----------------------------------------------


def test_output_equal_to_input_is_refused(attn, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, X)
    before = x.read_bytes()
    p = attn("run", "softmax", "--x", x, "-o", x, rc=4)
    assert "same file" in p.stderr and "--x" in p.stderr
    assert x.read_bytes() == before


def test_output_equal_to_input_through_a_symlink_or_other_spelling(attn, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, X)
    before = x.read_bytes()
    link = tmp_path / "link.npy"
    link.symlink_to(x)
    attn("run", "softmax", "--x", x, "-o", link, rc=4)
    attn("run", "softmax", "--x", link, "-o", x, rc=4)
    (tmp_path / "d").mkdir()
    attn("run", "softmax", "--x", x, "-o", tmp_path / "d" / ".." / "x.npy", rc=4)
    os.link(x, tmp_path / "hard.npy")
    attn("run", "softmax", "--x", x, "-o", tmp_path / "hard.npy", rc=4)
    assert x.read_bytes() == before


def test_output_equal_to_an_npz_input_is_refused(attn, tmp_path):
    z = tmp_path / "in.npz"
    np.savez(z, x=X)
    before = z.read_bytes()
    attn("run", "softmax", "--x", str(z) + ":x", "-o", z, rc=4)
    p = attn("run", "softmax", "--npz", z, "-o", z, rc=4)
    assert "--npz" in p.stderr
    assert z.read_bytes() == before


def test_lse_out_equal_to_an_input_is_refused(attn, tmp_path):
    args = sdpa_inputs(tmp_path)
    before = (tmp_path / "k.npy").read_bytes()
    p = attn("run", "sdpa", *args, "-o", tmp_path / "o.npy", "--lse-out", tmp_path / "k.npy",
             rc=4)
    assert "--lse-out" in p.stderr and "--k" in p.stderr
    assert (tmp_path / "k.npy").read_bytes() == before
    assert not (tmp_path / "o.npy").exists()


# ---- 5: never remove what this run did not create -----------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_failed_write_to_a_device_keeps_the_device(attn, tmp_path):
    np.save(tmp_path / "x.npy", X)
    full = tmp_path / "myfull"
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # /dev/full
    p = attn("run", "softmax", "--x", tmp_path / "x.npy", "-o", full, rc=4)
    assert "write failed" in p.stderr
    assert stat.S_ISCHR(os.lstat(full).st_mode)


def test_write_to_dev_null_leaves_it_a_device(attn, tmp_path):
    np.save(tmp_path / "x.npy", X)
    attn("run", "softmax", "--x", tmp_path / "x.npy", "-o", "/dev/null")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_symlink_to_stdout_is_written_through_and_kept(attn_bin, tmp_path):
    np.save(tmp_path / "x.npy", X)
    link = tmp_path / "out.npy"
    link.symlink_to("/proc/self/fd/1")
    p = subprocess.run([attn_bin, "run", "softmax", "--x", str(tmp_path / "x.npy"), "-o",
                        str(link)], capture_output=True)
    assert p.returncode == 0, p.stderr
    assert os.path.islink(link)
    got = np.load(__import__("io").BytesIO(p.stdout))
    np.testing.assert_allclose(got, softmax(X), rtol=1e-6)


def test_symlink_to_a_file_replaces_the_target_and_keeps_the_link(attn, tmp_path):
    np.save(tmp_path / "x.npy", X)
    target = tmp_path / "real.npy"
    target.write_bytes(b"old")
    link = tmp_path / "link.npy"
    link.symlink_to(target)
    attn("run", "softmax", "--x", tmp_path / "x.npy", "-o", link)
    assert os.path.islink(link)
    np.testing.assert_allclose(np.load(target), softmax(X), rtol=1e-6)


# ---- 6: all outputs or none, by rename; one file per output -------------------------


def test_killed_by_the_file_size_limit_keeps_the_old_output(attn_bin, tmp_path):
    x = np.ones((64, 64), np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npy"
    out.write_bytes(b"precious")

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    p = subprocess.run([attn_bin, "run", "softmax", "--x", str(tmp_path / "x.npy"), "-o",
                        str(out)], capture_output=True, text=True, preexec_fn=limit)
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert out.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["out.npy", "x.npy"]  # no temporary file left


def test_failed_second_output_writes_neither(attn, tmp_path):
    args = sdpa_inputs(tmp_path)
    (tmp_path / "outdir").mkdir()
    p = attn("run", "sdpa", *args, "-o", tmp_path / "o.npy", "--lse-out", tmp_path / "outdir",
             rc=4)
    assert "directory" in p.stderr
    assert not (tmp_path / "o.npy").exists()
    p = attn("run", "sdpa", *args, "-o", tmp_path / "o.npy", "--lse-out",
             tmp_path / "missing" / "l.npy", rc=4)
    assert not (tmp_path / "o.npy").exists()
    assert sorted(os.listdir(tmp_path)) == ["k.npy", "outdir", "q.npy", "v.npy"]


def test_two_outputs_to_one_file_are_refused(attn, tmp_path):
    args = sdpa_inputs(tmp_path)
    o = tmp_path / "o.npy"
    p = attn("run", "sdpa", *args, "-o", o, "--lse-out", o, rc=4)
    assert "same file" in p.stderr
    assert not o.exists()
    o.write_bytes(b"old")
    attn("run", "sdpa", *args, "-o", o, "--weights-out", tmp_path / "." / "o.npy", rc=4)
    assert o.read_bytes() == b"old"


def test_outputs_replace_old_files_with_the_new_results(attn, tmp_path):
    args = sdpa_inputs(tmp_path)
    o, l = tmp_path / "o.npy", tmp_path / "l.npy"
    o.write_bytes(b"old")
    l.write_bytes(b"old")
    attn("run", "sdpa", *args, "-o", o, "--lse-out", l)
    assert np.load(o).shape == (2, 3, 4) and np.load(l).shape == (2, 3)
    assert sorted(os.listdir(tmp_path)) == ["k.npy", "l.npy", "o.npy", "q.npy", "v.npy"]


# ---- 7: duplicate .npz members ------------------------------------------------------


@pytest.mark.parametrize("names", [("x.npy", "x.npy"), ("x", "x.npy")])
def test_npz_with_duplicate_members_is_refused(attn, tmp_path, names):
    z = tmp_path / "dup.npz"
    z.write_bytes(make_zip([(names[0], npy_bytes(X)), (names[1], npy_bytes(X + 1))]))
    p = attn("run", "softmax", "--npz", z, "-o", tmp_path / "o.npy", rc=3)
    assert "same array 'x'" in p.stderr
    attn("run", "softmax", "--x", str(z) + ":x", "-o", tmp_path / "o.npy", rc=3)
    attn("info", z, rc=3)


# ---- 8: long paths --------------------------------------------------------------------


def test_long_paths_are_used_whole(attn, tmp_path):
    # A folder chain whose full path is far beyond 1024 bytes; relative
    # paths from inside keep each system call's argument under PATH_MAX.
    d = tmp_path
    for i in range(12):
        d = d / ("d%02d_" % i + "x" * 120)
        d.mkdir()
    x = d / "x.npy"
    np.save(x, X)
    # Another file at the 1023-byte prefix would be read if the path were cut.
    assert len(str(x)) > 1200
    out = d / "o.npy"
    attn("run", "softmax", "--x", x, "-o", out)
    np.testing.assert_allclose(np.load(out), softmax(X), rtol=1e-6)
    attn("run", "softmax", "--x", str(x) + "y", "-o", out, rc=3)


def test_a_path_too_long_to_open_is_an_error(attn, tmp_path):
    p = attn("run", "softmax", "--x", "/" + "a" * 5000 + ".npy", "-o", tmp_path / "o.npy",
             rc=3)
    assert "cannot open" in p.stderr


def test_interrupted_run_leaves_no_temporary_file(attn_bin, tmp_path):
    # SIGTERM while a large output is being written to its temporary file
    # (sent as soon as that file appears): the file is removed, the old
    # output kept, and the process still dies of the signal.
    import signal
    import time
    x = np.ones((2048, 2048), np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npy"
    out.write_bytes(b"precious")
    p = subprocess.Popen([attn_bin, "run", "softmax", "--x", str(tmp_path / "x.npy"), "-o",
                          str(out)], stderr=subprocess.PIPE)
    deadline = time.time() + 20
    while time.time() < deadline and p.poll() is None:
        if any(n.startswith(".out.npy.") for n in os.listdir(tmp_path)):
            p.send_signal(signal.SIGTERM)
            break
        time.sleep(0.0005)
    p.wait(timeout=30)
    if p.returncode == 0:
        pytest.skip("the run finished before the signal could be sent")
    assert p.returncode == -signal.SIGTERM
    assert out.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["out.npy", "x.npy"]


def test_replaced_output_keeps_its_mode(attn, tmp_path):
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "out.npy"
    out.write_bytes(b"old")
    os.chmod(out, 0o640)
    attn("run", "softmax", "--x", tmp_path / "x.npy", "-o", out)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640
