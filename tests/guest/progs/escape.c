/* Paths that try to leave the root: "..", absolute host paths, symlinks pointing out,
 * dirfd-relative traversal, files created through "..". Everything must resolve inside
 * the container's root. argv[1] is the host's absolute path of a marker file that sits
 * just outside the rootfs; argv[2] is its base name. Prints what it reads. */
#include "common.h"
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

static void cat(const char *label, int dirfd, const char *path)
{
    int fd = openat(dirfd, path, O_RDONLY);
    if (fd < 0) {
        say("%s: %s\n", label, ename(errno));
        return;
    }
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    say("%s: read \"%s\"\n", label, strtok(buf, "\n") ? buf : "");
}

static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }

static void ls(const char *label, const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        say("%s: %s\n", label, ename(errno));
        return;
    }
    char *names[128];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 128)
        names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof names[0], cmp);
    say("%s:", label);
    for (int i = 0; i < n; i++)
        say(" %s", names[i]);
    say("\n");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        say("usage: escape HOST-MARKER-PATH MARKER-NAME\n");
        return 2;
    }
    const char *host_marker = argv[1], *name = argv[2];
    char path[4096], buf[4096];

    cat("../../../../etc/shadow from /", AT_FDCWD, "../../../../etc/shadow");
    cat("/../../../../../etc/hostname", AT_FDCWD, "/../../../../../etc/hostname");
    cat("host path of the marker", AT_FDCWD, host_marker);
    for (int up = 1; up <= 6; up++) {
        path[0] = 0;
        for (int i = 0; i < up; i++)
            strcat(path, "../");
        strcat(path, name);
        snprintf(buf, sizeof buf, "%d x ../marker", up);
        cat(buf, AT_FDCWD, path);
    }

    /* cd .. forever stays at / */
    chdir("/data/sub");
    for (int i = 0; i < 50; i++)
        chdir("..");
    say("after 50 x chdir(..): %s\n", getcwd(buf, sizeof buf));
    ls("ls / (sorted)", ".");
    cat("relative marker from the top", AT_FDCWD, name);

    /* symlinks pointing out */
    symlink("/etc/hostname", "/tmp/abs");
    symlink("../../../../../../../etc/hostname", "/tmp/rel");
    symlink(host_marker, "/tmp/host");
    snprintf(path, sizeof path, "../../../../../../%s", name);
    symlink(path, "/tmp/relmarker");
    symlink("/", "/tmp/root");
    symlink("..", "/tmp/up");
    cat("symlink -> /etc/hostname", AT_FDCWD, "/tmp/abs");
    cat("symlink -> ../../../../etc/hostname", AT_FDCWD, "/tmp/rel");
    cat("symlink -> host marker path", AT_FDCWD, "/tmp/host");
    cat("symlink -> ../../marker", AT_FDCWD, "/tmp/relmarker");
    ls("ls /tmp/root/../..", "/tmp/root/../..");
    ls("ls /tmp/up/up/..", "/tmp/up/../../..");
    snprintf(path, sizeof path, "/tmp/root/../%s", name);
    cat("/tmp/root/../marker", AT_FDCWD, path);
    ssize_t n = readlink("/tmp/host", buf, sizeof buf);
    say("readlink gives the text back unchanged: %d\n",
        n == (ssize_t)strlen(host_marker) && memcmp(buf, host_marker, n) == 0);

    /* dirfd-relative traversal */
    int etc = open("/etc", O_RDONLY | O_DIRECTORY);
    cat("openat(/etc, ../../../../etc/hostname)", etc, "../../../../etc/hostname");
    snprintf(path, sizeof path, "../../../%s", name);
    cat("openat(/etc, ../../../marker)", etc, path);
    cat("openat(/etc, host marker path)", etc, host_marker);
    int root = open("/", O_RDONLY | O_DIRECTORY);
    fchdir(root);
    chdir("..");
    say("fchdir(/) then chdir(..): %s\n", getcwd(buf, sizeof buf));
    int up = openat(root, "..", O_RDONLY | O_DIRECTORY);
    struct stat a, b;
    fstat(up, &a);
    fstat(root, &b);
    say("openat(/, ..) is / itself: %d\n", a.st_ino == b.st_ino && a.st_dev == b.st_dev);

    /* creating through .. lands inside */
    int fd = open("/tmp/../../../../../escaped-file", O_CREAT | O_WRONLY, 0644);
    write(fd, "inside\n", 7);
    close(fd);
    cat("/escaped-file", AT_FDCWD, "/escaped-file");
    CHECK("mkdir ../../../escaped-dir", mkdir("../../../escaped-dir", 0755));
    CHECK("stat /escaped-dir", stat("/escaped-dir", &a));
    CHECK("rename into ../../..", rename("/escaped-file", "/../../../escaped-renamed"));
    cat("/escaped-renamed", AT_FDCWD, "/escaped-renamed");
    CHECK("symlink through ..", symlink("x", "/../../escaped-link"));
    n = readlink("/escaped-link", buf, sizeof buf);
    say("/escaped-link -> %.*s\n", (int)(n > 0 ? n : 0), buf);
    return 0;
}
