# The guest root filesystem as a container image, for people who have Docker.
# It holds exactly the tree host-runner turns into its ext2 root image:
#
#   cargo run -p host-runner -- image --export image/rootfs
#   docker build -t uring-getdents-root .
#   mkdir rootfs && docker export "$(docker create uring-getdents-root)" | tar -x -C rootfs
#   mke2fs -t ext2 -d rootfs root.ext2 1G
#
# host-runner itself never needs Docker: it runs `mke2fs -d` on the same tree.
FROM scratch
COPY image/rootfs/ /
CMD ["/sbin/init"]
