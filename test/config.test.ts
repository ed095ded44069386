// Settings read by loadConfig that no engine test starts with: their defaults and their
// bounds (a bad value is a ConfigError naming the setting, never a silent fallback).
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

describe('loadConfig: the checkpointer settings', () => {
  it('defaults to nice 19 and a CPU share left to the checkpointer (100 % when its priority is lowered, else 25 %)', () => {
    const c = loadConfig({});
    expect(c.checkpointNice).toBe(19);
    expect(c.checkpointCpuPercent).toBeNull();
    expect(loadConfig({ FLASH_CHECKPOINT_NICE: '0', FLASH_CHECKPOINT_CPU_PERCENT: '50' })).toMatchObject({ checkpointNice: 0, checkpointCpuPercent: 50 });
    expect(loadConfig({ FLASH_CHECKPOINT_CPU_PERCENT: ' ' }).checkpointCpuPercent).toBeNull();
  });

  it('refuses a nice value outside 0..19 and a share outside 5..100, naming the setting', () => {
    for (const [name, value] of [['FLASH_CHECKPOINT_NICE', '20'], ['FLASH_CHECKPOINT_NICE', '-1'], ['FLASH_CHECKPOINT_NICE', 'low'], ['FLASH_CHECKPOINT_CPU_PERCENT', '4'], ['FLASH_CHECKPOINT_CPU_PERCENT', '101']] as const) {
      expect(() => loadConfig({ [name]: value }), `${name}=${value}`).toThrow(ConfigError);
      expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`^${name}=`));
    }
  });
});
