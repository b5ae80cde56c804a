import { main } from './cli/main.ts';
import { handleError } from './cli/errors.ts';

main(process.argv).catch(handleError);
