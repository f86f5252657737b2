// How a slot looks: colour tone, state word, icon and the phase in words.
// The state is always written out, never conveyed by colour alone.

const ACTIVE = new Set(['queued', 'connecting', 'identifying', 'flashing', 'verifying', 'resetting', 'boot_check']);

// Engine stage names (esp_loader) and daemon stages, as a technician reads them.
const STAGES = {
  open: 'Opening the port',
  connect: 'Resetting into the bootloader',
  sync: 'Synchronising with the ROM',
  identify: 'Reading chip and MAC',
  detect: 'Reading chip and MAC',
  stub: 'Uploading the flasher stub',
  baud: 'Raising the baud rate',
  attach: 'Attaching the flash',
  flash_id: 'Reading the flash chip',
  params: 'Setting flash parameters',
  compare: 'Comparing with what is on the board',
  erase: 'Erasing the flash',
  write: 'Writing the flash',
  verify: 'Verifying (MD5)',
  reset: 'Resetting into the application',
  boot_check: 'Watching the boot log',
};

// "Failed …" in words, by the stage the job was in.
const FAILED_AT = {
  open: 'Could not open the port',
  connect: 'Could not reach the bootloader',
  sync: 'No contact with the bootloader',
  identify: 'Could not identify the chip',
  stub: 'Flasher stub did not start',
  baud: 'Failed to raise the baud rate',
  attach: 'Could not attach the flash',
  compare: 'Failed while comparing flash',
  erase: 'Failed while erasing',
  write: 'Failed while writing flash',
  verify: 'Verification failed',
  finish: 'Failed while finishing the write',
  reset: 'Failed to reset the board',
  boot_check: 'Boot check failed',
};

const PHASES = {
  empty: { tone: 'empty', word: 'Empty', icon: '○', phase: 'No board — plug one in' },
  idle: { tone: 'idle', word: 'Idle', icon: '●', phase: 'Ready' },
  queued: { tone: 'work', word: 'Queued', icon: '…', phase: 'Waiting for a free flashing place' },
  connecting: { tone: 'work', word: 'Working', icon: '▶', phase: 'Connecting to the bootloader' },
  identifying: { tone: 'work', word: 'Working', icon: '▶', phase: 'Reading chip and MAC' },
  flashing: { tone: 'work', word: 'Flashing', icon: '▶', phase: 'Flashing' },
  verifying: { tone: 'work', word: 'Verifying', icon: '▶', phase: 'Verifying (MD5)' },
  resetting: { tone: 'work', word: 'Working', icon: '▶', phase: 'Resetting into the application' },
  boot_check: { tone: 'work', word: 'Boot check', icon: '▶', phase: 'Watching the boot log' },
  passed: { tone: 'pass', word: 'Passed', icon: '✔', phase: 'Flashed and verified' },
  awaiting_network: { tone: 'wait', word: 'Awaiting network', icon: '◔', phase: 'Flashed ✔, waiting for check-in' },
  online: { tone: 'online', word: 'Online', icon: '⇅', phase: 'Online' },
  failed: { tone: 'fail', word: 'Failed', icon: '✖', phase: 'Failed' },
  skipped: { tone: 'skip', word: 'Skipped', icon: '↷', phase: 'Nothing to do' },
  cancelled: { tone: 'idle', word: 'Cancelled', icon: '■', phase: 'Cancelled' },
};

export function stageWords(stage) {
  if (!stage) return '';
  return STAGES[stage] || stage.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());
}

export function slotView(s) {
  const base = PHASES[s.phase] || { tone: 'idle', word: s.phase || 'Unknown', icon: '?', phase: s.phase || '' };
  const v = { ...base, active: ACTIVE.has(s.phase), reason: '', advice: '' };
  if (v.active && s.phase !== 'queued' && s.stage) v.phase = stageWords(s.stage);
  // A running job that waits for a person (a set that asks not to be reset: hold BOOT, tap
  // EN): say what to do on the tile, not only in the job log.
  if (v.active && s.notice) { v.reason = s.notice; v.tone = 'wait'; }
  if (s.phase === 'failed') {
    v.phase = s.errorStage ? (FAILED_AT[s.errorStage] || `Failed at stage “${s.errorStage}”`) : 'Failed';
    v.reason = s.errorMessage || 'The job failed (no reason recorded)';
    v.advice = s.errorAdvice || '';
  } else if (s.phase === 'skipped') {
    const up = /already carries/i.test(s.errorMessage || '');
    if (up) { v.tone = 'pass'; v.word = 'Up to date'; v.icon = '✔'; v.phase = 'Already carries this firmware'; }
    else { v.reason = s.errorMessage || ''; v.advice = s.errorAdvice || ''; v.phase = 'Skipped'; }
  } else if (s.phase === 'online') {
    v.phase = 'Online — checked in';
  } else if (s.phase === 'cancelled' && s.errorMessage) {
    v.reason = s.errorMessage;
  }
  return v;
}
