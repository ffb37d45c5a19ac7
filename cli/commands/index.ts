import type { Command } from '../command.ts';
import { demoServiceCommand } from './demo-service.ts';

/** Every command of the meshfed CLI. Each lives in its own file under cli/commands/. */
export const COMMANDS: Command[] = [demoServiceCommand];
