/**
 * Run by the flash bench in a process that sees the emulated USB bus: finds the device, flashes
 * one image with our client, and prints the seconds that took (process start-up excluded, as it
 * is nearly nothing for the C++ fastboot it is compared with).
 *
 * Usage: node --import tsx flash-child.ts <serial> <partition> <image>
 */
import { FastbootClient } from '../../device/fastboot/client.ts';

const [target, partition, image] = process.argv.slice(2);
const t = performance.now();
const c = await FastbootClient.open(target);
await c.flash(partition, image);
await c.close();
process.stdout.write(`${JSON.stringify({ seconds: (performance.now() - t) / 1000 })}\n`);
// libusb's event thread would keep the process alive.
process.exit(0);
