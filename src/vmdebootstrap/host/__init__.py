"""The build host: command runner, mounts, binfmt, apt sources, distro facts, passwords."""
