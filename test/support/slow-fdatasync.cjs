// TEST-ONLY preload (NODE_OPTIONS=--require ...): delays every fs.fdatasync callback by
// FLASH_TEST_SLOW_FDATASYNC_MS (the sync itself runs at once), or fails it with EIO when
// FLASH_TEST_FDATASYNC_EIO_AFTER=n (the n-th and later calls). Loaded in worker threads too.
const fs = require('node:fs');
const { isMainThread } = require('node:worker_threads');
const delayMs = Number(process.env.FLASH_TEST_SLOW_FDATASYNC_MS ?? '0');
const eioAfter = Number(process.env.FLASH_TEST_FDATASYNC_EIO_AFTER ?? '0');
let calls = 0;
const real = fs.fdatasync;
fs.fdatasync = function (fd, cb) {
  calls++;
  if (eioAfter > 0 && calls >= eioAfter) {
    const e = Object.assign(new Error('EIO: i/o error, fdatasync (injected)'), { code: 'EIO', errno: -5, syscall: 'fdatasync' });
    setTimeout(() => cb(e), delayMs);
    return;
  }
  real.call(fs, fd, (err) => setTimeout(() => cb(err), delayMs));
};
if (process.env.FLASH_TEST_SLOW_FDATASYNC_LOG === '1') process.stderr.write(`slow-fdatasync preload in ${isMainThread ? 'main' : 'worker'} thread\n`);
