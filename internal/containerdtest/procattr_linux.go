package containerdtest

import "syscall"

// sysProcAttr kills the daemon when the test binary dies without running its cleanups (a timeout panic).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
