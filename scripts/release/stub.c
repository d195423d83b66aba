/*
 * The front of dist/kupod-linux-<arch>: a static program that carries kupod's
 * runtime, program, BPF objects and libbpf as an xz payload appended to itself.
 *
 * File layout: [this program][payload][trailer, TRAILER_SIZE bytes]. The
 * trailer names the payload's offset, size, SHA-256 and an id
 * "<version>-<hash>". On the first start (under a lock per id) the payload's
 * hash is checked, then it is unpacked into a private temporary directory
 * beside the cache entry and renamed into place, so no start ever sees half a
 * tree. Later starts only read a small stamp (no re-hashing of ~30 MB) and exec
 * the runtime.
 *
 * Static (glibc + liblzma) so that a node needs nothing but the kernel.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <lzma.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sha256.h"

#define TRAILER_MAGIC "KUPODSX1"
#define TRAILER_SIZE 128
#define ARCHIVE_MAGIC "KPA1"
#define STAMP ".kupod-payload-sha256"
#define CHUNK (1 << 20)

struct trailer {
	uint64_t offset, size;
	uint8_t sha[32];
	char id[65];
	/* 0: `deno run` of app/cli/main.ts; 1: kupod compiled by `deno compile`. */
	uint8_t compiled;
};

/* A temporary directory to remove if the unpack fails. */
static char g_tmp[PATH_MAX];
/* This start unpacked the tree (and still holds the lock): it warms Deno's cache too. */
static int g_installed;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void rm_tree(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void die(const char *fmt, ...)
{
	va_list ap;
	if (g_tmp[0])
		rm_tree(g_tmp);
	fputs("Error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void damaged(const char *what)
{
	die("this kupod file is damaged (%s): download it again", what);
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void hex(const uint8_t *sha, char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", sha[i]);
}

static void path_join(char *out, const char *a, const char *b)
{
	if ((size_t)snprintf(out, PATH_MAX, "%s/%s", a, b) >= PATH_MAX)
		die("path too long: %s/%s", a, b);
}

static void read_trailer(int fd, struct trailer *t)
{
	struct stat st;
	uint8_t b[TRAILER_SIZE];
	if (fstat(fd, &st) < 0 || st.st_size < TRAILER_SIZE ||
	    pread(fd, b, sizeof b, st.st_size - TRAILER_SIZE) != TRAILER_SIZE ||
	    memcmp(b, TRAILER_MAGIC, 8) != 0)
		damaged("no payload trailer");
	t->offset = le64(b + 8);
	t->size = le64(b + 16);
	memcpy(t->sha, b + 24, 32);
	memcpy(t->id, b + 56, 64);
	t->id[64] = 0;
	t->compiled = b[120];
	if (t->offset + t->size + TRAILER_SIZE != (uint64_t)st.st_size)
		damaged("payload size does not match the file size");
	/* The id names a directory: plain characters only, never a path. */
	size_t n = strlen(t->id);
	if (n == 0 || t->id[0] == '.' || strspn(t->id, "abcdefghijklmnopqrstuvwxyz"
						   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-") != n)
		damaged("bad build id");
}

/* The cache root: $KUPOD_CACHE_DIR, /var/cache/kupod for root, else the XDG cache. */
static void cache_root(char *out)
{
	const char *env = getenv("KUPOD_CACHE_DIR");
	const char *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	int n;
	if (env && env[0] == '/')
		n = snprintf(out, PATH_MAX, "%s", env);
	else if (env && env[0])
		die("KUPOD_CACHE_DIR must be an absolute path: %s", env);
	else if (geteuid() == 0)
		n = snprintf(out, PATH_MAX, "/var/cache/kupod");
	else if (xdg && xdg[0] == '/')
		n = snprintf(out, PATH_MAX, "%s/kupod", xdg);
	else if (home && home[0] == '/')
		n = snprintf(out, PATH_MAX, "%s/.cache/kupod", home);
	else
		die("no cache directory: set KUPOD_CACHE_DIR, XDG_CACHE_HOME or HOME");
	if (n < 0 || n >= PATH_MAX - 128)
		die("cache directory path too long");
	while (n > 1 && out[n - 1] == '/')
		out[--n] = 0;
}

/*
 * Creates the cache root (and missing parents) as 0700 and refuses one that
 * another user owns or may write: it holds programs this process will run.
 */
static void make_root(char *root)
{
	for (char *p = root + 1;; p++) {
		if (*p == '/' || *p == 0) {
			char c = *p;
			*p = 0;
			if (mkdir(root, 0700) < 0 && errno != EEXIST)
				die("cannot create cache directory %s: %s", root, strerror(errno));
			*p = c;
			if (!c)
				break;
		}
	}
	struct stat st;
	if (stat(root, &st) < 0 || !S_ISDIR(st.st_mode))
		die("cache directory %s is not a directory", root);
	if (st.st_uid != geteuid() || (st.st_mode & 022))
		die("cache directory %s is not owned by this user or is writable by others: refusing",
		    root);
}

/* An unpacked tree of exactly this payload: ours, private, with the stamp of its hash. */
static int ready(const char *dir, const char *sha_hex)
{
	struct stat st;
	char stamp[PATH_MAX], got[64];
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 077))
		return 0;
	path_join(stamp, dir, STAMP);
	int fd = open(stamp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, got, sizeof got);
	close(fd);
	return n == 64 && memcmp(got, sha_hex, 64) == 0;
}

static void verify(int fd, const struct trailer *t)
{
	static uint8_t buf[CHUNK];
	struct sha256 s;
	uint8_t sha[32];
	sha256_init(&s);
	for (uint64_t done = 0; done < t->size;) {
		size_t want = t->size - done < CHUNK ? t->size - done : CHUNK;
		ssize_t n = pread(fd, buf, want, t->offset + done);
		if (n <= 0)
			damaged("payload cannot be read");
		sha256_update(&s, buf, n);
		done += n;
	}
	sha256_final(&s, sha);
	if (memcmp(sha, t->sha, 32) != 0)
		damaged("payload SHA-256 does not match");
}

/*
 * The archive inside the xz stream: "KPA1", then records
 * [u8 kind][u16 path length][u32 mode][u64 size][path][size bytes of data],
 * kind 1 a file, 2 a directory, 0 the end. Little-endian. Only files and
 * directories exist (no links), and every path is checked to stay inside.
 */
struct unpacker {
	int dirfd;
	int state; /* 0 magic, 1 header, 2 path, 3 data, 4 ended */
	uint8_t hdr[15];
	size_t got;
	char path[PATH_MAX];
	unsigned kind, pathlen, mode;
	uint64_t left;
	int out;
	size_t files;
};

static int safe_path(const char *p)
{
	if (!p[0] || p[0] == '/')
		return 0;
	for (const char *s = p; *s;) {
		size_t n = strcspn(s, "/");
		if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
			return 0;
		s += n;
		if (*s == '/')
			s++;
		else
			break;
	}
	return p[strlen(p) - 1] != '/';
}

static void write_all(int fd, const uint8_t *p, size_t n, const char *path)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			die("cannot write %s/%s: %s", g_tmp, path, strerror(errno));
		}
		p += w;
		n -= w;
	}
}

static void entry_start(struct unpacker *u)
{
	u->path[u->pathlen] = 0;
	if (!safe_path(u->path))
		damaged("unsafe path in archive");
	if (u->kind == 2) {
		if (mkdirat(u->dirfd, u->path, 0700) < 0)
			die("cannot create %s/%s: %s", g_tmp, u->path, strerror(errno));
		if (fchmodat(u->dirfd, u->path, u->mode & 0755, 0) < 0)
			die("cannot chmod %s/%s: %s", g_tmp, u->path, strerror(errno));
		u->state = 1;
		return;
	}
	u->out = openat(u->dirfd, u->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			u->mode & 0755);
	if (u->out < 0)
		die("cannot create %s/%s: %s", g_tmp, u->path, strerror(errno));
	u->files++;
	u->state = 3;
}

static void entry_end(struct unpacker *u)
{
	if (close(u->out) < 0)
		die("cannot write %s/%s: %s", g_tmp, u->path, strerror(errno));
	u->out = -1;
	u->state = 1;
}

static void feed(struct unpacker *u, const uint8_t *p, size_t n)
{
	while (n) {
		switch (u->state) {
		case 0: {
			size_t take = 4 - u->got < n ? 4 - u->got : n;
			memcpy(u->hdr + u->got, p, take);
			u->got += take;
			p += take;
			n -= take;
			if (u->got == 4) {
				if (memcmp(u->hdr, ARCHIVE_MAGIC, 4) != 0)
					damaged("not a kupod archive");
				u->got = 0;
				u->state = 1;
			}
			break;
		}
		case 1: {
			size_t take = sizeof u->hdr - u->got < n ? sizeof u->hdr - u->got : n;
			memcpy(u->hdr + u->got, p, take);
			u->got += take;
			p += take;
			n -= take;
			if (u->got < sizeof u->hdr)
				break;
			u->got = 0;
			u->kind = u->hdr[0];
			u->pathlen = u->hdr[1] | u->hdr[2] << 8;
			u->mode = u->hdr[3] | u->hdr[4] << 8 | u->hdr[5] << 16 |
				  (unsigned)u->hdr[6] << 24;
			u->left = le64(u->hdr + 7);
			if (u->kind == 0) {
				u->state = 4;
			} else if ((u->kind != 1 && u->kind != 2) || u->pathlen == 0 ||
				   u->pathlen >= PATH_MAX - 1 || (u->kind == 2 && u->left)) {
				damaged("bad archive record");
			} else {
				u->state = 2;
			}
			break;
		}
		case 2: {
			size_t take = u->pathlen - u->got < n ? u->pathlen - u->got : n;
			memcpy(u->path + u->got, p, take);
			u->got += take;
			p += take;
			n -= take;
			if (u->got < u->pathlen)
				break;
			u->got = 0;
			entry_start(u);
			if (u->state == 3 && u->left == 0)
				entry_end(u);
			break;
		}
		case 3: {
			size_t take = u->left < n ? u->left : n;
			write_all(u->out, p, take, u->path);
			u->left -= take;
			p += take;
			n -= take;
			if (!u->left)
				entry_end(u);
			break;
		}
		default:
			damaged("data after the end of the archive");
		}
	}
}

static void unpack(int fd, const struct trailer *t, int dirfd)
{
	static uint8_t in[CHUNK], out[CHUNK];
	lzma_stream z = LZMA_STREAM_INIT;
	struct unpacker u = { .dirfd = dirfd, .out = -1 };
	if (lzma_stream_decoder(&z, UINT64_MAX, LZMA_CONCATENATED) != LZMA_OK)
		die("cannot start the xz decoder");
	uint64_t done = 0;
	for (;;) {
		if (z.avail_in == 0 && done < t->size) {
			size_t want = t->size - done < CHUNK ? t->size - done : CHUNK;
			ssize_t n = pread(fd, in, want, t->offset + done);
			if (n <= 0)
				damaged("payload cannot be read");
			done += n;
			z.next_in = in;
			z.avail_in = n;
		}
		z.next_out = out;
		z.avail_out = sizeof out;
		lzma_ret r = lzma_code(&z, done == t->size ? LZMA_FINISH : LZMA_RUN);
		feed(&u, out, sizeof out - z.avail_out);
		if (r == LZMA_STREAM_END)
			break;
		if (r != LZMA_OK)
			damaged("xz stream");
	}
	lzma_end(&z);
	if (u.state != 4)
		damaged("archive ends early");
}

/*
 * Holds <root>/.<id>.lock until exec (the descriptor closes on exec): concurrent first starts
 * of one file wait for one unpack instead of each doing it.
 */
static void lock_id(const char *root, const char *id)
{
	char path[PATH_MAX];
	if ((size_t)snprintf(path, sizeof path, "%s/.%s.lock", root, id) >= sizeof path)
		die("path too long");
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		die("cannot open %s: %s", path, strerror(errno));
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR)
			die("cannot lock %s: %s", path, strerror(errno));
}

/* Temporaries of this id that an interrupted first start left (we hold the lock: none is live). */
static void remove_leftovers(const char *root, const char *id)
{
	char prefix[128], path[PATH_MAX];
	snprintf(prefix, sizeof prefix, ".unpack-%s-", id);
	DIR *d = opendir(root);
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d));) {
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
			path_join(path, root, e->d_name);
			rm_tree(path);
		}
	}
	closedir(d);
}

/* Unpacks the payload into <root>/<id> unless a concurrent start got there first. */
static void install(int fd, const struct trailer *t, const char *root, const char *dir,
		    const char *sha_hex)
{
	lock_id(root, t->id);
	if (ready(dir, sha_hex))
		return;
	remove_leftovers(root, t->id);
	verify(fd, t);
	if ((size_t)snprintf(g_tmp, sizeof g_tmp, "%s/.unpack-%s-XXXXXX", root, t->id) >=
	    sizeof g_tmp)
		die("path too long");
	if (!mkdtemp(g_tmp))
		die("cannot create a directory in %s: %s", root, strerror(errno));
	fprintf(stderr, "kupod: first start of %s: unpacking into %s\n", t->id, dir);
	int dirfd = open(g_tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		die("cannot open %s: %s", g_tmp, strerror(errno));
	unpack(fd, t, dirfd);
	int s = openat(dirfd, STAMP, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (s < 0)
		die("cannot write the stamp in %s: %s", g_tmp, strerror(errno));
	write_all(s, (const uint8_t *)sha_hex, 64, STAMP);
	close(s);
	/* On disk before it has its final name, so a crash never leaves a stamped half tree. */
	syncfs(dirfd);
	close(dirfd);
	if (rename(g_tmp, dir) == 0) {
		g_tmp[0] = 0;
		g_installed = 1;
		return;
	}
	if (errno != EEXIST && errno != ENOTEMPTY)
		die("cannot rename %s to %s: %s", g_tmp, dir, strerror(errno));
	if (ready(dir, sha_hex)) {
		/* Another first start won the race: use its tree. */
		rm_tree(g_tmp);
		g_tmp[0] = 0;
		return;
	}
	/* A stale or foreign tree under our name: move it aside, then take its place. */
	char stale[PATH_MAX];
	if ((size_t)snprintf(stale, sizeof stale, "%s/.stale-%s-%d", root, t->id, (int)getpid()) >=
	    sizeof stale)
		die("path too long");
	if (rename(dir, stale) < 0 || rename(g_tmp, dir) < 0)
		die("cannot replace %s: %s", dir, strerror(errno));
	g_tmp[0] = 0;
	g_installed = 1;
	rm_tree(stale);
}

/*
 * Compiles kupod's modules into Deno's cache once, at the unpack: a run that compiles them
 * itself keeps ~10 MB of that work resident for its life (measured: 84 against 76 MB under
 * load). Deno's cache is keyed by the modules' paths, so this runs where the tree now lies. A
 * failure costs only that memory: the run compiles what it lacks.
 */
static void warm(const char *deno, const char *config, const char *main_ts)
{
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execl(deno, deno, "cache", "--quiet", "--config", config, main_ts, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

int main(int argc, char **argv)
{
	struct trailer t;
	char root[PATH_MAX], dir[PATH_MAX], sha_hex[65];
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("cannot open /proc/self/exe: %s", strerror(errno));
	read_trailer(fd, &t);
	hex(t.sha, sha_hex);
	cache_root(root);
	path_join(dir, root, t.id);
	if (!ready(dir, sha_hex)) {
		mode_t old = umask(077);
		make_root(root);
		install(fd, &t, root, dir, sha_hex);
		umask(old);
	}
	close(fd);

	char deno[PATH_MAX], config[PATH_MAX], main_ts[PATH_MAX], libbpf[PATH_MAX],
		deno_dir[PATH_MAX];
	path_join(deno, dir, t.compiled ? "kupod" : "deno");
	path_join(config, dir, "app/deno.json");
	path_join(main_ts, dir, "app/cli/main.ts");
	path_join(libbpf, dir, "lib/libbpf.so.1");
	path_join(deno_dir, dir, "deno-dir");
	/* The bundled libbpf unless the operator names another; Deno's caches beside the tree. */
	setenv("KUPOD_LIBBPF", libbpf, 0);
	setenv("DENO_DIR", deno_dir, 1);
	setenv("DENO_NO_UPDATE_CHECK", "1", 1);
	/* The same runtime flags as the repository's ./kupod launcher (see there for why). */
	setenv("MALLOC_ARENA_MAX", "2", 0);
	setenv("MALLOC_MMAP_THRESHOLD_", "131072", 0);
	if (g_installed && !t.compiled)
		warm(deno, config, main_ts);
	const char *fixed[] = { deno,	  "run",       "--quiet", "--no-prompt", "--allow-all",
				"--v8-flags=--max-semi-space-size=2", "--cached-only",
				"--config", config, main_ts };
	size_t nf = t.compiled ? 1 : sizeof fixed / sizeof fixed[0];
	char **args = calloc(nf + argc, sizeof *args);
	if (!args)
		die("out of memory");
	for (size_t i = 0; i < nf; i++)
		args[i] = (char *)fixed[i];
	for (int i = 1; i < argc; i++)
		args[nf + i - 1] = argv[i];
	execv(deno, args);
	die("cannot run %s: %s", deno, strerror(errno));
	return 1;
}
