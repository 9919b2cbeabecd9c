"""The state of the machine a benchmark ran on, for its results.

The same GPU gives different eager timings on different machines: where the host CPU cannot
launch kernels as fast as the GPU runs them (small batches), the run's pace is the launch
cost, which depends on the CPU and on the sandbox the process runs in (a gVisor sandbox
intercepts every driver call). So the results record the kernel and sandbox, the CPU, the
cost of one kernel launch measured on the spot, and the GPU's clocks, power and other
processes before and after the runs.
"""
import os
import platform
import shutil
import statistics
import subprocess
import time

GPU_FIELDS = ("clocks.sm", "clocks.mem", "clocks.max.sm", "power.draw", "power.limit", "temperature.gpu",
              "pstate", "utilization.gpu", "memory.used", "clocks_event_reasons.active")


def runtime_name(kernel_release):
    """gVisor reports a fixed 4.4.0 kernel; this workplace's Firecracker kernels carry '-fc-'."""
    if kernel_release.startswith("4.4.0"):
        return "gVisor"
    if "-fc-" in kernel_release:
        return "Firecracker"
    return "other"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), None)
    except OSError:
        return None


def host_machine():
    release = platform.release()
    return {"kernel": release, "runtime": runtime_name(release), "cpu": cpu_model(), "cpu_count": os.cpu_count()}


def gpu_state():
    """nvidia-smi's clocks, power, temperature, load and compute processes now (None without it)."""
    if shutil.which("nvidia-smi") is None:
        return None
    def query(what, fields):
        done = subprocess.run(["nvidia-smi", f"--query-{what}={','.join(fields)}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
        return done.stdout.strip().splitlines() if done.returncode == 0 else None

    try:
        fields = GPU_FIELDS
        rows = query("gpu", fields)
        if rows is None:  # an older driver without the clock-event field
            fields = GPU_FIELDS[:-1]
            rows = query("gpu", fields) or []
        apps = query("compute-apps", ("pid", "used_memory")) or []
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"error": repr(error)}
    state = dict(zip(fields, (v.strip() for v in rows[0].split(",")))) if rows else {}
    state["compute_processes"] = [line.strip() for line in apps if line.strip()]
    return state


def kernel_launch_us(device, launches=2000, rounds=5):
    """Host time per tiny kernel launch (an in-place add on one element), median of rounds:
    the floor under every eager UNet call whose GPU work is smaller than its launches."""
    import torch
    x = torch.zeros(1, device=device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    per_launch = []
    for _ in range(rounds + 1):  # the first round warms up
        sync()
        start = time.perf_counter()
        for _ in range(launches):
            x.add_(1.0)
        sync()
        per_launch.append(1e6 * (time.perf_counter() - start) / launches)
    return statistics.median(per_launch[1:])
