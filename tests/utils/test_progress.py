"""Progress goes where the user is looking (the runner's terminal), never into the report."""

import time

from linrepro.utils import progress as pr


def test_in_a_recorded_run_the_bar_goes_to_the_progress_file_not_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LINREPRO_RUN_DIR", str(tmp_path))
    with pr.progress(10, "csv val @32px", unit="img") as bar:
        for _ in range(4):
            bar.update()
            bar.refresh()
        seen = pr.read_progress(tmp_path)
    out = capsys.readouterr()
    assert out.err == "" and out.out == ""  # nothing the kernel's stderr (the report) would show
    assert seen.startswith("csv val @32px:  40%|") and "4/10" in seen
    assert "4/10" in pr.read_progress(tmp_path)  # the closed bar's last state stays for the runner
    assert "\r" not in pr.read_progress(tmp_path)


def test_status_line_has_the_task_the_count_and_the_time_left(tmp_path, monkeypatch):
    monkeypatch.setenv("LINREPRO_RUN_DIR", str(tmp_path))
    pr.status("tiny-B/eq7 epoch 3/14", 10, 100, key="t1")
    time.sleep(0.05)
    line = pr.status("tiny-B/eq7 epoch 3/14", 30, 100, key="t1")
    assert pr.read_progress(tmp_path) == line
    assert line.startswith("tiny-B/eq7 epoch 3/14:  30%|") and "30/100" in line
    left = line.split("<")[1].split(",")[0]  # [elapsed<left, rate]
    assert left != "?" and "step/s" in line


def test_interactive_progress_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.delenv("LINREPRO_RUN_DIR", raising=False)
    assert pr.progress_path() is None
    assert pr.status("x", 1, 2).startswith("x:  50%")


def test_the_runner_shows_task_changes_and_throttles_the_rest(tmp_path):
    from linrepro.runner.execute import ProgressFollower

    shown = []
    f = ProgressFollower(tmp_path, "03_clip_training", every=15, write=shown.append)
    (tmp_path / pr.PROGRESS_FILE).write_text("tiny-S/softmax epoch 1/2:  10%|#  | 1/10 [00:01<00:09]\n")
    assert f.check(now=0.0)
    (tmp_path / pr.PROGRESS_FILE).write_text("tiny-S/softmax epoch 1/2:  20%|## | 2/10 [00:02<00:08]\n")
    assert f.check(now=5.0) is None  # same task, 5 s later: not shown
    assert f.check(now=16.0)  # 15 s on: shown
    (tmp_path / pr.PROGRESS_FILE).write_text("tiny-S/softmax epoch 2/2:  10%|#  | 1/10 [00:01<00:09]\n")
    assert f.check(now=16.5)  # a new epoch: shown at once
    assert f.check(now=17.0) is None  # unchanged
    assert shown == [
        "    03_clip_training · tiny-S/softmax epoch 1/2:  10%|#  | 1/10 [00:01<00:09]",
        "    03_clip_training · tiny-S/softmax epoch 1/2:  20%|## | 2/10 [00:02<00:08]",
        "    03_clip_training · tiny-S/softmax epoch 2/2:  10%|#  | 1/10 [00:01<00:09]",
    ]
