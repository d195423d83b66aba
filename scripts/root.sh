# Sourced by the scripts that need root (apt-get, BPF, network namespaces). As root they go
# on; otherwise they run again through sudo where it exists, or stop with one line.
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null; then
		exec sudo -- "$0" "$@"
	fi
	echo "Error: $(basename "$0") needs root (apt-get, BPF, network namespaces): run it as root" >&2
	exit 1
fi
