"""A run resumed across logs plots as one curve: what a killed process logged past its last checkpoint
is replaced by what the resumed one logged from there."""
from zoo.curves import plot_curve, read_resumed


def write(path, rows, val=()):
    lines = [f"0,{s},{v},\n" for s, v in rows] + [f"0,{s},,{v}\n" for s, v in val]
    path.write_text("epoch,step,train/loss,val/acc\n" + "".join(lines))
    return path


def test_a_resumed_run_keeps_each_step_once_from_the_log_that_survived(tmp_path):
    # killed after step 30, its last checkpoint at 20; the lost process also validated at 25
    first = write(tmp_path / "v0.csv", [(0, 5.0), (10, 4.0), (20, 3.0), (30, 9.9)], val=[(15, 0.5), (25, 0.9)])
    second = write(tmp_path / "v1.csv", [(20, 3.1), (30, 2.5), (40, 2.0)], val=[(35, 0.7)])
    series = read_resumed([first, second])
    assert series["train/loss"] == [(0, 5.0), (10, 4.0), (20, 3.1), (30, 2.5), (40, 2.0)]
    assert series["val/acc"] == [(15, 0.5), (35, 0.7)]
    assert plot_curve([first, second], tmp_path / "curve.png", ("train/loss",)).is_file()
